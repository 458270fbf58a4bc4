"""The named outputs of a VAE's passes (small dataclasses, as diffusers' ``AutoencoderKLOutput``).

``Encoding`` is the bottom-up pass, ``VAEOutput`` the whole forward pass with the ELBO's terms; the
decoder's top-down pass gives ``parts.base.DecoderOutput`` and each stochastic layer a
``parts.kl.LayerKL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution


@dataclass
class Encoding:
    """The bottom-up pass over a batch: q(z_1|x), the encoder's features by side for the lower layers'
    posteriors (None when the decoder has no lower layers) and the checked labels (None unless
    conditional)."""

    posterior: Distribution
    features: dict[int, torch.Tensor] | None
    labels: torch.Tensor | None


@dataclass
class VAEOutput:
    """What one forward pass gives: the posterior, the latent draw, and the ELBO's terms per image."""

    posterior: Distribution  # q(z_1|x)
    z: torch.Tensor  # (B, latent_dim) the top latents drawn
    px_params: torch.Tensor  # the likelihood's parameters, (B, ...); (k * B, ...) with iw_samples = k
    log_px_z: torch.Tensor  # (B,) reconstruction term log p(x|z), nats
    kl: torch.Tensor  # (B,) sum of the layers' KL(q || p), nats (analytic where torch.distributions has it)
    # (B, G) the KL split into G parts that sum to ``kl``, for per-group objectives such as free bits:
    # one per latent dimension for a single-layer model with factorised q and p, one per stochastic
    # layer for a hierarchical model; None where the KL does not split (e.g. a VampPrior).
    kl_groups: torch.Tensor | None = None
    # (B, L) KL of each stochastic layer, top first; sums to ``kl``. L = 1 for a single-layer model.
    kl_layers: torch.Tensor | None = None
    # (k, B) log p(x, z_k) - log q(z_k|x) when the forward pass drew k importance samples (IWAE);
    # log_px_z and kl are then the averages over the k samples (a k-sample ELBO estimate).
    log_weights: torch.Tensor | None = None
    # (B, C, H, W) the input batch, for objectives that compare it with the reconstruction.
    x: torch.Tensor | None = None

    @property
    def elbo(self) -> torch.Tensor:
        """Per-image evidence lower bound, nats: log p(x|z) - KL."""
        return self.log_px_z - self.kl
