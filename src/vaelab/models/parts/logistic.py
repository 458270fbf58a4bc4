"""Discretised logistic mixture likelihood for 8-bit images (PixelCNN++, Salimans et al. 2017, sec. 2.1).

Each pixel value k in {0, ..., 255} (stored as k/255 in [0, 1], rescaled to [-1, 1]) owns the bin
[x - 1/255, x + 1/255]; its probability is the mass a mixture of logistics puts on that bin, with the
two edge bins extended to -inf and +inf so that the 256 probabilities sum to exactly 1. The result is a
normalised distribution over discrete pixels: its NLL in nats / (D ln 2) is bits/dim directly.

Unlike PixelCNN++ the channels are modelled independently given z (no autoregressive coupling of
R, G, B): the decoder already sees the whole image through z, and the part stays one mixture per
pixel and channel. Each component has a logit weight, a mean and a log-scale: 3 x components decoder
channels per image channel.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, constraints
from torch.nn.functional import log_softmax, softplus

from vaelab.models.config import LogisticMixtureLikelihoodConfig

LEVELS = 256
# The largest log-scale: keeps the bin width in scaled units (2 / 255 / scale) well above float eps.
MAX_LOG_SCALE = 7.0


class DiscretizedLogisticMixture(Distribution):
    """Per pixel and channel, a mixture of logistics discretised to 256 levels; event (C, H, W).

    Parameters have shape (..., M, C, H, W): mixture logits, means in [-1, 1] units, log-scales.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.unit_interval

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> None:
        self.logits, self.means, self.log_scales = logits, means, log_scales
        super().__init__(logits.shape[:-4], logits.shape[-3:], validate_args=False)

    def log_prob_per_pixel(self, value: torch.Tensor) -> torch.Tensor:
        """log P(pixel = value) for every pixel, shape (..., C, H, W); ``value`` in [0, 1] (k/255)."""
        level = torch.round(value * (LEVELS - 1))
        x = (level / (LEVELS - 1) * 2 - 1).unsqueeze(-4)  # (..., 1, C, H, W) in [-1, 1]
        inv_scale = torch.exp(-self.log_scales)
        half_bin = 1.0 / (LEVELS - 1)
        upper = inv_scale * (x - self.means + half_bin)
        lower = inv_scale * (x - self.means - half_bin)
        # log(sigmoid(u) - sigmoid(l)) = u + log(1 - exp(l - u)) - softplus(u) - softplus(l): exact and
        # stable for every u > l (no 1e-5 fallback to the density as in the PixelCNN++ code).
        log_mid = upper + torch.log(-torch.expm1(lower - upper)) - softplus(upper) - softplus(lower)
        log_first = -softplus(-upper)  # level 0: P(X < x + half_bin) = sigmoid(upper)
        log_last = -softplus(lower)  # level 255: P(X > x - half_bin) = 1 - sigmoid(lower)
        lvl = level.unsqueeze(-4)
        log_bin = torch.where(lvl <= 0, log_first, torch.where(lvl >= LEVELS - 1, log_last, log_mid))
        return torch.logsumexp(log_softmax(self.logits, dim=-4) + log_bin, dim=-4)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(image) in nats, summed over (C, H, W)."""
        return self.log_prob_per_pixel(value).sum((-3, -2, -1))

    @property
    def mean(self) -> torch.Tensor:
        """Approximate expected image in [0, 1]: the mixture-weighted component means (clipped)."""
        weights = torch.softmax(self.logits, dim=-4)
        return ((weights * self.means.clamp(-1, 1)).sum(-4) + 1) / 2

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Images in [0, 1] on the 256 levels: a component per pixel, then a logistic draw, rounded."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.logits.shape
            gumbel = -torch.log(
                -torch.log(torch.rand(shape, device=self.logits.device).clamp(1e-10, 1 - 1e-10))
            )
            pick = (self.logits + gumbel).argmax(dim=-4, keepdim=True)
            mean = torch.gather(self.means.expand(shape), -4, pick).squeeze(-4)
            log_scale = torch.gather(self.log_scales.expand(shape), -4, pick).squeeze(-4)
            u = torch.rand(mean.shape, device=mean.device).clamp(1e-5, 1 - 1e-5)
            x = (mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
            return torch.round((x + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1)


class LogisticMixtureLikelihood(nn.Module):
    """p(x|z) = discretised logistic mixture per pixel and channel, from the decoder's outputs."""

    def __init__(self, config: LogisticMixtureLikelihoodConfig) -> None:
        super().__init__()
        self.config = config
        self.params_per_channel = 3 * config.components

    def _split(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        b, ch, h, w = params.shape
        m = self.config.components
        logits, means, log_scales = params.view(b, 3, m, ch // (3 * m), h, w).unbind(1)
        log_scales = log_scales.clamp(self.config.min_log_scale, MAX_LOG_SCALE)
        return DiscretizedLogisticMixture(logits, torch.tanh(means), log_scales)

    def forward(self, params: torch.Tensor) -> Distribution:
        return self._split(params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1] (for grids and reconstructions)."""
        return self._split(params).mean
