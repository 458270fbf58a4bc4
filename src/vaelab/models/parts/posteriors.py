"""Posterior parts: turn encoder outputs into q(z|x), a torch.distributions object (its KL against
the prior: ``parts/kl.py``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.distributions import Distribution

from vaelab.models.part_config import (
    PartConfig,
)
from vaelab.models.parts.kl import diagonal_gaussian


class GaussianPosteriorConfig(PartConfig):
    """Diagonal Gaussian q(z|x) from a mean and a log-variance per latent dimension."""

    name: Literal["gaussian"] = "gaussian"
    # The log-variance is clamped to this range when the distribution is built, so one bad batch
    # cannot produce exp(1000) = inf (the same guard as diffusers' DiagonalGaussianDistribution).
    logvar_min: float = -30.0
    logvar_max: float = 20.0


class GaussianPosterior(nn.Module):
    """Diagonal Gaussian q(z|x) = N(mean, exp(logvar)); ``rsample`` is the reparameterisation trick."""

    config_class = GaussianPosteriorConfig

    def __init__(self, config: GaussianPosteriorConfig, latent_dim: int) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim

    @property
    def param_dim(self) -> int:
        """How many numbers the encoder must output per image: a mean and a log-variance per dimension."""
        return 2 * self.latent_dim

    def forward(self, params: torch.Tensor) -> Distribution:
        mean, logvar = params.chunk(2, dim=-1)
        return diagonal_gaussian(mean, logvar, (self.config.logvar_min, self.config.logvar_max), 1)
