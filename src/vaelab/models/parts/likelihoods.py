"""Likelihood parts p(x|z): decoder outputs -> a distribution over whole images.

Each part is built for the images' channel count and says how many decoder output channels it needs
(``param_channels``), and gives the distribution (event shape C x H x W, so ``log_prob`` returns one
number per image, in nats) and the image to show.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal
from torch.nn.functional import softplus

from vaelab.models.part_config import (
    PartConfig,
)
from vaelab.models.parts.base import LikelihoodPart  # defined in parts/base.py; importable from here too


class BernoulliLikelihoodConfig(PartConfig):
    """Bernoulli per pixel, parameterised by logits (binary or [0,1] pixels)."""

    name: Literal["bernoulli"] = "bernoulli"


class GaussianLikelihoodConfig(PartConfig):
    """Gaussian density per pixel (pixels in [0, 1]). ``variance``: ``fixed`` (``sigma``), ``learned``
    (a log-scale per pixel from the decoder; can collapse on colour images, see docs/models.md) or
    ``shared`` (one learned log-scale per image channel, starting at ``sigma``: the calibrated decoder of
    Rybkin et al. 2021, sigma-VAE)."""

    name: Literal["gaussian"] = "gaussian"
    variance: Literal["fixed", "learned", "shared"] = "fixed"
    sigma: float = Field(default=0.1, gt=0.0)
    # Floor on the learned log-scale. learned: -7 (VDVAE's), a saved config without the key keeps it.
    # shared: log(1/510) = -6.23, half an 8-bit level: below 1/(256 sqrt(2 pi)) = 1.56e-3 the density
    # times the bin width 1/256 would exceed 1 at the mode, i.e. the density would be fitting the
    # quantisation grid rather than the image. Filled in per mode when the key is absent.
    min_log_scale: float = -7.0

    @model_validator(mode="before")
    @classmethod
    def _floor_per_mode(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("variance") == "shared" and "min_log_scale" not in data:
            return {**data, "min_log_scale": -6.23}
        return data

    @model_validator(mode="after")
    def _sigma_above_floor(self) -> GaussianLikelihoodConfig:
        if self.variance == "shared" and math.log(self.sigma) <= self.min_log_scale:
            raise ValueError(
                f"sigma {self.sigma} (the shared scale's start) must lie above the floor "
                f"exp(min_log_scale) = {math.exp(self.min_log_scale):.3g}"
            )
        return self


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


class BernoulliLikelihood(LikelihoodPart):
    """Bernoulli per pixel from logits (never sigmoid-then-BCE: logits keep log p finite).

    Pixels may be binary or grey levels in [0, 1]; for grey levels ``log_prob`` is the usual
    negative binary cross-entropy (argument validation is off so that fractional targets pass).
    """

    config_class = BernoulliLikelihoodConfig

    params_per_channel = 1

    def __init__(self, config: BernoulliLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.param_channels = channels

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(FastBernoulli(logits=params, validate_args=False), 3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1]: the pixel probabilities."""
        return torch.sigmoid(params)

    def guided_channels(self) -> int:
        """Every channel: mixing logits is exactly p(x|z)^(1 - w) p(x|z, y)^w, renormalised per pixel."""
        return self.param_channels


class GaussianLikelihood(LikelihoodPart):
    """Gaussian density per pixel over [0, 1]; the scale is fixed, learned per pixel, or shared.

    ``learned``: the decoder outputs a log-scale per pixel, floored at ``min_log_scale``. On colour photos
    this collapses: a density on 8-bit data is unbounded, so the model is paid without limit for pinning
    easy pixels with tiny scales (gradients ~ 1/scale^2, norms of 1e4-1e5 were seen) while it can explain
    every hard pixel with a wide scale whatever z says; it settles on the same blurred mean image for
    every input, z unused.

    ``shared`` (Rybkin et al. 2021, sigma-VAE): one learned log-scale per image channel, a parameter of
    this part, not a decoder output. No pixel can opt out: the scale's optimum is the channel's RMS
    reconstruction error over all pixels and images, so it shrinks only as reconstructions improve, and
    every pixel's error weighs the same 1/scale^2, which the floor bounds (at -6.23: 2.6e5). The floor is
    smooth, log-scale = floor + softplus(raw - floor), so the parameter never sits on a zero gradient.
    """

    config_class = GaussianLikelihoodConfig

    def __init__(self, config: GaussianLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.params_per_channel = 2 if config.variance == "learned" else 1
        self.param_channels = channels * self.params_per_channel
        if config.variance == "shared":
            # Start at exactly sigma: raw = floor + softplus^-1(log(sigma) - floor).
            gap = math.log(config.sigma) - config.min_log_scale
            raw = config.min_log_scale + gap + math.log(-math.expm1(-gap))
            self.log_scale_raw = nn.Parameter(torch.full((channels, 1, 1), raw))

    def log_scale(self) -> torch.Tensor:
        """(C, 1, 1) shared log-scale (``variance: shared`` only), never below ``min_log_scale``."""
        floor = self.config.min_log_scale
        return floor + softplus(self.log_scale_raw - floor)

    def _loc_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.variance == "fixed":
            return params, torch.full_like(params, self.config.sigma)
        if self.config.variance == "shared":
            return params, torch.exp(self.log_scale()).expand_as(params)
        loc, log_scale = params.chunk(2, dim=1)
        return loc, torch.exp(log_scale.clamp(min=self.config.min_log_scale))

    def forward(self, params: torch.Tensor) -> Distribution:
        loc, scale = self._loc_scale(params)
        return Independent(Normal(loc, scale, validate_args=False), 3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image, clipped to the valid pixel range [0, 1]."""
        return self.raw_mean(params).clamp(0.0, 1.0)

    def raw_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The location itself, unclipped (see ``LikelihoodPart.raw_mean``)."""
        return self._loc_scale(params)[0]

    def guided_channels(self) -> int:
        """The means. With a fixed or shared scale both passes have the same scale, and the mixed mean is
        exactly p(x|z)^(1 - w) p(x|z, y)^w; a learned scale stays the conditional pass's (with unequal
        scales that product is no Gaussian: for w > 1 its precision can be negative)."""
        return self.param_channels // self.params_per_channel
