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


def log1p_exp_neg(a: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(-a)) for a >= 0, at one speed whatever a is.

    The textbook log1p(exp(-a)) is exact but, on CPUs, slow for the very values a trained decoder
    produces: exp underflows to subnormals beyond a ~ 87, and the vectorised log1p takes a slow path for
    arguments below ~1e-9 (a > ~20). A confident model's background pixels sit there, which made
    importance-weighted evaluation of a trained MLP 2x slower than of an untrained one
    (docs/performance.md). Beyond a = 15, log1p(e) = e - e²/2 + ... equals e to 5e-14, so e is used,
    with a capped at 80 (exp(-80) is 1.8e-35, a normal float); below, log1p sees only e >= 3e-7.
    """
    return torch.where(a > 15.0, torch.exp(-a.clamp(max=80.0)), torch.log1p(torch.exp(-a.clamp(max=15.0))))


class FastBernoulli(Bernoulli):
    """``torch.distributions.Bernoulli`` whose ``log_prob`` is y * l - softplus(l) with
    :func:`log1p_exp_neg`: the same numbers (within 1e-6 nats per pixel, tested), a constant cost."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, value)
        return value * logits - logits.clamp(min=0) - log1p_exp_neg(logits.abs())


class BernoulliLikelihood(nn.Module):
    """Bernoulli per pixel from logits (never sigmoid-then-BCE: logits keep log p finite).

    Pixels may be binary or grey levels in [0, 1]; for grey levels ``log_prob`` is the usual
    negative binary cross-entropy (argument validation is off so that fractional targets pass).
    """

    params_per_channel = 1

    def __init__(self, config: BernoulliLikelihoodConfig) -> None:
        super().__init__()

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(FastBernoulli(logits=params, validate_args=False), 3)

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
