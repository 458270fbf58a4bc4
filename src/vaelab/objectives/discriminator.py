"""The patch discriminator of the adversarial objective and its losses.

PatchGAN (Isola et al. 2017, pix2pix; the discriminator of VQGAN and of latent diffusion's KL
autoencoders): a few stride-2 4x4 convolutions that end in one logit per overlapping patch, so it
judges local texture and edges -- what a pixel-wise likelihood blurs -- and not the layout, which the
reconstruction term already fixes. Its losses: hinge (Lim & Ye 2017; VQGAN's default) or the
non-saturating logistic loss (Goodfellow et al. 2014); optional spectral norm on every convolution
(Miyato et al. 2018) and the R1 gradient penalty on real images (Mescheder et al. 2018).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DiscLoss = Literal["hinge", "non_saturating"]


class PatchDiscriminator(nn.Module):
    """``layers`` stride-2 4x4 convolutions (widths ``channels`` x 1, 2, 4, ... capped at 8x) with leaky
    ReLUs, then a stride-1 4x4 convolution to one logit per patch. Inputs in [0, 1] are mapped to
    [-1, 1]. No batch norm: each image's logits depend on that image alone (R1 and DDP stay simple)."""

    def __init__(self, in_channels: int, channels: int = 64, layers: int = 2, spectral: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if spectral else (lambda m: m)
        mods: list[nn.Module] = []
        width = in_channels
        for i in range(layers):
            out = channels * min(2**i, 8)
            mods += [norm(nn.Conv2d(width, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            width = out
        mods.append(norm(nn.Conv2d(width, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) logits, one per patch: high for real, low for reconstructions."""
        return self.net(x * 2 - 1)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: DiscLoss) -> torch.Tensor:
    """The discriminator's loss on real and fake patch logits, averaged over patches and images."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def generator_loss(fake: torch.Tensor, kind: DiscLoss) -> torch.Tensor:
    """What the generator minimises to fool the discriminator: -D(fake) for hinge (VQGAN), the
    non-saturating -log sigmoid(D(fake)) otherwise."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1: the mean over images of ||grad_x D(x)||^2 on real images (sum of the patch logits), which keeps
    the discriminator flat around the data (Mescheder et al. 2018); weighted by gamma / 2 by the caller."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()
