"""Perceptual distance for the adversarial objective: LPIPS-style, over the feature maps of a frozen net.

The distance between two images is, summed over the net's tapped layers, the squared difference of
their channel-normalised feature maps, summed over channels and averaged over positions (LPIPS,
Zhang et al. 2018, with every channel weighted 1: the "lin" layer LPIPS learns from human judgements
is not used). The net is frozen and works offline:

- ``vgg16_features(path)``: VGG16's convolutional layers (Simonyan & Zisserman 2015) from a local
  safetensors file the user points to, keys as torchvision names them (``features.0.weight``, ...).
  Never downloaded; a file that is not safetensors (a pickle, say) is refused, never unpickled.
- a feature net vaelab trains itself on the user's data (see ``vaelab.training.perceptual``), tapped
  after each of its convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from vaelab.errors import ConfigError

# torchvision's VGG16 "features": widths, "M" a 2x2 max-pool; LPIPS taps relu1_2 ... relu5_3.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22, 29)  # indices of those ReLUs in the Sequential
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TappedFeatures(nn.Module):
    """A frozen ``nn.Sequential`` that returns the activations after the modules at ``taps``, for
    images in [0, 1] (normalised by ``mean``/``std`` first; grey images are repeated to ``channels``)."""

    def __init__(
        self,
        layers: nn.Sequential,
        taps: Sequence[int],
        channels: int,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.layers, self.taps, self.channels = layers[: max(taps) + 1], set(taps), channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TappedFeatures:
        """Always in eval mode: the net is a fixed measuring device."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        h, out = (x - self.mean) / self.std, []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out


class PerceptualDistance(nn.Module):
    """(B,) LPIPS-style distance between two batches of images in [0, 1] through ``features``."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        for fx, fy in zip(self.features(x), self.features(y), strict=True):
            fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
            fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fx - fy).square().sum(1).flatten(1).mean(1)
        return total


def vgg16_features(path: str | Path) -> TappedFeatures:
    """VGG16's convolutional layers with weights from the safetensors file at ``path`` (torchvision's
    key names, with or without the ``features.`` prefix), tapped where LPIPS taps them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"perceptual weights file {path} does not exist")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(
            f"perceptual weights file {path} is not a safetensors file ({exc}); vaelab reads weights only "
            "as safetensors and never unpickles a file (convert it with safetensors.torch.save_file)"
        ) from None
    weights = {k.removeprefix("features."): v for k, v in weights.items()}
    layers: list[nn.Module] = []
    width = 3
    for spec in VGG16:
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(width, int(spec), 3, padding=1), nn.ReLU()]
            width = int(spec)
    net = nn.Sequential(*layers)
    expected = set(net.state_dict())
    missing = sorted(expected - set(weights))
    if missing:
        raise ConfigError(
            f"perceptual weights file {path} lacks {len(missing)} VGG16 weights, e.g. {missing[0]} "
            "(expected torchvision's names, e.g. features.0.weight)"
        )
    try:
        net.load_state_dict({k: weights[k] for k in expected})
    except RuntimeError as exc:
        raise ConfigError(
            f"perceptual weights file {path} has VGG16 weights of the wrong shape: {exc}"
        ) from None
    return TappedFeatures(net, VGG16_TAPS, 3, IMAGENET_MEAN, IMAGENET_STD)
