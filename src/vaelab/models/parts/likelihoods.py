"""Likelihood parts p(x|z): decoder outputs -> a distribution over whole images.

Each part says how many decoder channels it needs per image channel, and gives the distribution
(event shape C x H x W, so ``log_prob`` returns one number per image, in nats) and the image to show.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaelab.models.config import BernoulliLikelihoodConfig, GaussianLikelihoodConfig


class BernoulliLikelihood(nn.Module):
    """Bernoulli per pixel from logits (never sigmoid-then-BCE: logits keep log p finite).

    Pixels may be binary or grey levels in [0, 1]; for grey levels ``log_prob`` is the usual
    negative binary cross-entropy (argument validation is off so that fractional targets pass).
    """

    params_per_channel = 1

    def __init__(self, config: BernoulliLikelihoodConfig) -> None:
        super().__init__()

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(Bernoulli(logits=params, validate_args=False), 3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1]: the pixel probabilities."""
        return torch.sigmoid(params)


class GaussianLikelihood(nn.Module):
    """Gaussian per pixel: a fixed sigma, or a per-pixel learned log-scale with a floor."""

    def __init__(self, config: GaussianLikelihoodConfig) -> None:
        super().__init__()
        self.config = config
        self.params_per_channel = 2 if config.variance == "learned" else 1
        self.log_sigma = math.log(config.sigma)

    def _loc_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.params_per_channel == 1:
            return params, torch.full_like(params, self.config.sigma)
        loc, log_scale = params.chunk(2, dim=1)
        return loc, torch.exp(log_scale.clamp(min=self.config.min_log_scale))

    def forward(self, params: torch.Tensor) -> Distribution:
        loc, scale = self._loc_scale(params)
        return Independent(Normal(loc, scale, validate_args=False), 3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image, clipped to the valid pixel range [0, 1]."""
        return self._loc_scale(params)[0].clamp(0.0, 1.0)
