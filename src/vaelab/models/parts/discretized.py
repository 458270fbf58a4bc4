"""Discretised Gaussian likelihood for 8-bit images: a Gaussian per pixel and channel integrated over
each level's bin.

Level k in {0, ..., 255} (stored as k/255) owns the bin [(k - 0.5)/255, (k + 0.5)/255] of [0, 1]; the
two edge bins reach to -inf and +inf, so the 256 probabilities sum to exactly 1 and the NLL in nats /
(D ln 2) is bits/dim directly (as for the logistic mixture, ``vaelab.models.parts.logistic``). Unlike a
Gaussian density on 8-bit data, whose value at a perfectly predicted pixel grows without bound as the
scale shrinks, log P <= 0 here: a confident scale earns at most the bin's full mass.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch.distributions import Distribution, constraints

from vaelab.models.part_config import (
    PartConfig,
)
from vaelab.models.parts.likelihoods import LikelihoodPart


class DiscretizedGaussianLikelihoodConfig(PartConfig):
    """Gaussian per pixel and channel integrated over each of the 256 bins of an 8-bit level (the edge
    bins reaching to -inf and +inf): a normalised distribution over the levels, like the logistic
    mixture, with one mean and one log-scale from the decoder per pixel and channel."""

    name: Literal["discretized_gaussian"] = "discretized_gaussian"
    # Floor on the log-scale, in [0, 1] pixel units: log(1/1020), a quarter of a level. The distribution
    # is discrete, so a tiny scale cannot blow the likelihood up (log P <= 0); the floor bounds the
    # gradient (~ 1/scale^2) of a confident, wrong pixel. At it the centre bin already gets 95.4% of the
    # mass: finer scales buy almost nothing (PixelCNN++'s -7 in [-1, 1] units is 0.12 of a level).
    min_log_scale: float = -6.93


LEVELS = 256
# The largest log-scale, in [0, 1] units (a scale 1100 times the pixel range): keeps exp(-log_scale) a
# normal float; no useful model comes near it.
MAX_LOG_SCALE = 7.0
# Below this, log Phi(x) comes from its asymptotic series: torch's log_ndtr is accurate there, but its
# gradient (computed as exp(x^2/2 + log Phi(x)) terms) loses all precision in float32 beyond |x| ~ 1e3
# (at x = -1e5 it returns 0.4 for the true 1e5), and a confident scale with a far-off mean reaches that.
TAIL = -20.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """log Phi(x), the standard normal log-CDF, with a correct gradient for every x.

    For x < -20: log Phi(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log(1 - 1/x^2 + 3/x^4 - 15/x^6), whose
    truncation error (105/x^8 < 5e-9) is below float32's resolution.
    """
    t = x.clamp(max=TAIL)
    inv_t2 = 1.0 / (t * t)
    series = torch.log1p(inv_t2 * (-1.0 + inv_t2 * (3.0 - 15.0 * inv_t2)))
    tail = -0.5 * t * t - torch.log(-t) - _HALF_LOG_2PI + series
    return torch.where(x < TAIL, tail, torch.special.log_ndtr(x.clamp(min=TAIL)))


def log_normal_bin(
    lower: torch.Tensor,
    upper: torch.Tensor,
    centre: torch.Tensor,
    width: torch.Tensor,
    first: torch.Tensor,
    last: torch.Tensor,
) -> torch.Tensor:
    """log P(bin) under the standard normal, for a bin given both as its edges and as its centre and
    width (w > 0): Phi(upper) - Phi(lower), except Phi(upper) where ``first`` and 1 - Phi(lower) where
    ``last`` (the edge bins reach to -inf and +inf). Stable everywhere.

    A bin right of the mean is mirrored to the left (the mass of [l, u] is that of [-u, -l]), so both
    log-CDFs are taken where they are accurate (l' < 0), and the mass is log Phi(u') + log(1 - exp(-gap)),
    gap = log Phi(u') - log Phi(l'). The edges are the ones the neighbouring bins compute too, so these
    masses add up to 1 to float precision. When gap is small (a bin narrow against the scale) that
    difference has lost digits: each log-CDF carries an absolute error of eps |log Phi|, the mass a
    relative one of eps |log Phi| / gap. There the midpoint rule with its second-order term,
    log(phi(c) w) + log1p(w^2 (c^2 - 1) / 24), is used instead, from the centre and width (not from the
    edges, whose difference has lost the same digits): its error is the next term, ~ (w c)^4 / 1920 <=
    gap^4 / 1920. The switch sits where the two errors meet, gap^5 = 1920 eps |log Phi(l')| (gap ~ 0.2 in
    float32, 0.004 in float64): relative errors of ~2e-6 and ~1e-13.
    """
    right = centre > 0
    log_hi = log_ndtr(torch.where(right, -lower, upper))
    log_lo = log_ndtr(torch.where(right, -upper, lower))
    gap = log_hi - log_lo
    eps = torch.finfo(gap.dtype).eps
    small = gap.pow(5) < 1920 * eps * log_lo.detach().abs().clamp(min=1)
    # where() passes gradients to both branches: keep the unused one finite (log(0) has an inf slope).
    interior = log_hi + torch.log(-torch.expm1(-torch.where(small, torch.ones_like(gap), gap)))
    midpoint = (
        -0.5 * centre * centre
        - _HALF_LOG_2PI
        + torch.log(width)
        + torch.log1p(width * width * (centre * centre - 1) / 24)
    )
    interior = torch.where(small, midpoint, interior)
    # The edge bins from the same two log-CDFs: Phi(upper) is Phi(u') unmirrored and 1 - Phi(l')
    # mirrored; 1 - Phi(lower) the other way round. l' < 0, so 1 - Phi(l') > 1/2 loses nothing.
    log_lo_complement = torch.log(-torch.expm1(log_lo))
    below_upper = torch.where(right, log_lo_complement, log_hi)
    above_lower = torch.where(right, log_hi, log_lo_complement)
    return torch.where(first, below_upper, torch.where(last, above_lower, interior))


class DiscretizedGaussian(Distribution):
    """Per pixel and channel, a Gaussian discretised to 256 levels; event (C, H, W).

    ``loc`` and ``log_scale`` (..., C, H, W) are in [0, 1] pixel units.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.unit_interval

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor) -> None:
        self.loc, self.log_scale = loc, log_scale
        super().__init__(loc.shape[:-3], loc.shape[-3:], validate_args=False)

    def log_prob_per_pixel(self, value: torch.Tensor) -> torch.Tensor:
        """log P(pixel = value) for every pixel, shape (..., C, H, W); ``value`` in [0, 1] (k/255)."""
        level = torch.round(value * (LEVELS - 1)).clamp(0, LEVELS - 1)
        # In units of the scale: the bin's edges (bitwise the same as the neighbours' edges), its centre's
        # offset from the mean and its width 1/255.
        inv_scale = torch.exp(-self.log_scale)
        lower = ((level - 0.5) / (LEVELS - 1) - self.loc) * inv_scale
        upper = ((level + 0.5) / (LEVELS - 1) - self.loc) * inv_scale
        centre = (level / (LEVELS - 1) - self.loc) * inv_scale
        width = inv_scale / (LEVELS - 1)
        return log_normal_bin(lower, upper, centre, width, level <= 0, level >= LEVELS - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(image) in nats, summed over (C, H, W)."""
        return self.log_prob_per_pixel(value).sum((-3, -2, -1))

    @property
    def mean(self) -> torch.Tensor:
        """The image to show: the Gaussian means clipped to [0, 1] (the exact expectation of the
        discretised variable differs from it only near the edges, by less than a scale)."""
        return self.loc.clamp(0, 1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Images in [0, 1] on the 256 levels: a Gaussian draw rounded to its level (exact: rounding
        picks the bin the draw fell in, clamping gives the edge bins their tails)."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            noise = torch.randn(shape, device=self.loc.device, dtype=self.loc.dtype)
            x = self.loc + torch.exp(self.log_scale) * noise
            return torch.round(x * (LEVELS - 1)).clamp(0, LEVELS - 1) / (LEVELS - 1)


class DiscretizedGaussianLikelihood(LikelihoodPart):
    """p(x|z) = discretised Gaussian per pixel and channel; the decoder gives a mean and a log-scale
    (floored at ``min_log_scale``) per pixel and channel."""

    config_class = DiscretizedGaussianLikelihoodConfig

    discrete = True
    params_per_channel = 2

    def __init__(self, config: DiscretizedGaussianLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.param_channels = channels * self.params_per_channel

    def forward(self, params: torch.Tensor) -> Distribution:
        loc, log_scale = params.chunk(2, dim=1)
        return DiscretizedGaussian(loc, log_scale.clamp(self.config.min_log_scale, MAX_LOG_SCALE))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1] (for grids and reconstructions)."""
        return self.raw_mean(params).clamp(0, 1)

    def raw_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The location, unclipped (see ``LikelihoodPart.raw_mean``)."""
        return params.chunk(2, dim=1)[0]

    def guided_channels(self) -> int:
        """The means; the log-scales stay the conditional pass's (as for a learned Gaussian scale)."""
        return self.param_channels // 2
