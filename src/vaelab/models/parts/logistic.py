"""Discretised logistic mixture likelihood for 8-bit images (PixelCNN++, Salimans et al. 2017, sec. 2).

Each pixel value k in {0, ..., 255} (stored as k/255 in [0, 1], rescaled to [-1, 1]) owns the bin
[x - 1/255, x + 1/255]; its probability is the mass a mixture of logistics puts on that bin, with the
two edge bins extended to -inf and +inf so that the 256 probabilities sum to exactly 1. The result is a
normalised distribution over discrete pixels: its NLL in nats / (D ln 2) is bits/dim directly.

Two forms. Uncoupled (the default): one mixture per pixel and channel, each component a logit weight,
a mean and a log-scale (3 x components decoder channels per image channel). Coupled (RGB only,
PixelCNN++ sec. 2.2): one mixture indicator per pixel shared by its three channels, and within a
component the channels are autoregressive: R ~ L(mu_R, s_R), G ~ L(mu_G + alpha R, s_G),
B ~ L(mu_B + beta R + gamma G, s_B), with R and G the pixel's own values (observed in ``log_prob``,
drawn first in ``sample``). Per pixel: M logits, 3M means, 3M log-scales, 3M coefficients (10M).
The decoder sees the whole image through z, but only coupling lets a component say "this pixel is
grey" (R = G = B) with a sharp scale on G and B instead of three independent guesses.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch.distributions import Distribution, constraints
from torch.nn.functional import log_softmax, softplus

from vaelab.errors import ConfigError
from vaelab.models.part_config import (
    PartConfig,
)
from vaelab.models.parts.likelihoods import LikelihoodPart


class LogisticMixtureLikelihoodConfig(PartConfig):
    """Discretised logistic mixture over 8-bit pixels (PixelCNN++, Salimans et al. 2017), one mixture of
    ``components`` logistics per pixel and channel; a normalised distribution over the 256 levels."""

    name: Literal["logistic_mixture"] = "logistic_mixture"
    components: int = Field(default=5, ge=1)
    # Floor on each logistic's log-scale (PixelCNN++ uses -7): a component cannot shrink onto one level.
    min_log_scale: float = -7.0
    # RGB only: PixelCNN++'s channel coupling (sec. 2.2): one mixture indicator per pixel, and within a
    # component G's mean moves with the pixel's R and B's with R and G (10 x components decoder channels
    # per pixel). False (the default, so that a saved config without the key keeps its meaning): one
    # independent mixture per pixel and channel. Colour configs should set it true.
    coupled: bool = False


LEVELS = 256
# The largest log-scale: keeps the bin width in scaled units (2 / 255 / scale) well above float eps.
MAX_LOG_SCALE = 7.0


def to_levels(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels in [0, 1] -> (level k in {0, ..., 255} as floats, its bin centre 2k/255 - 1 in [-1, 1])."""
    level = torch.round(value * (LEVELS - 1)).clamp(0, LEVELS - 1)
    return level, level / (LEVELS - 1) * 2 - 1


def log_bin_mass(
    level: torch.Tensor, x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log P(level) under logistics (means, exp(log_scales)) in [-1, 1] units; shapes broadcast."""
    inv_scale = torch.exp(-log_scales)
    half_bin = 1.0 / (LEVELS - 1)
    upper = inv_scale * (x - means + half_bin)
    lower = inv_scale * (x - means - half_bin)
    # log(sigmoid(u) - sigmoid(l)) = u + log(1 - exp(l - u)) - softplus(u) - softplus(l): exact and
    # stable for every u > l (no 1e-5 fallback to the density as in the PixelCNN++ code).
    log_mid = upper + torch.log(-torch.expm1(lower - upper)) - softplus(upper) - softplus(lower)
    log_first = -softplus(-upper)  # level 0: P(X < x + half_bin) = sigmoid(upper)
    log_last = -softplus(lower)  # level 255: P(X > x - half_bin) = 1 - sigmoid(lower)
    return torch.where(level <= 0, log_first, torch.where(level >= LEVELS - 1, log_last, log_mid))


def logistic_level(means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """A logistic draw rounded to its level, as the bin centre in [-1, 1] (exact for the discretised
    distribution: rounding picks the bin the draw fell in, clamping gives the edge bins their tails)."""
    u = torch.rand(means.shape, device=means.device, dtype=means.dtype).clamp(1e-5, 1 - 1e-5)
    x = (means + torch.exp(log_scales) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
    return torch.round((x + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1) * 2 - 1


def pick_component(logits: torch.Tensor, dim: int, sample_shape: torch.Size) -> torch.Tensor:
    """Index of one mixture component per pixel (Gumbel-max over ``dim``), keepdim, for ``gather``."""
    shape = torch.Size(sample_shape) + logits.shape
    uniform = torch.rand(shape, device=logits.device).clamp(1e-10, 1 - 1e-10)
    return (logits - torch.log(-torch.log(uniform))).argmax(dim=dim, keepdim=True)


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
        level, x = to_levels(value)
        log_bin = log_bin_mass(level.unsqueeze(-4), x.unsqueeze(-4), self.means, self.log_scales)
        return torch.logsumexp(log_softmax(self.logits, dim=-4) + log_bin, dim=-4)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(image) in nats, summed over (C, H, W)."""
        return self.log_prob_per_pixel(value).sum((-3, -2, -1))

    @property
    def mean(self) -> torch.Tensor:
        """Approximate expected image in [0, 1]: the mixture-weighted component means (clipped)."""
        return self.expected(clip=True)

    def expected(self, clip: bool) -> torch.Tensor:
        """The mixture-weighted component means in [0, 1] units, each clipped to the pixel range or not
        (unclipped: what a loss on the decoder's output needs, as ``LikelihoodPart.raw_mean``). The
        likelihood part passes means through tanh, so here the clip only guards other callers."""
        weights = torch.softmax(self.logits, dim=-4)
        means = self.means.clamp(-1, 1) if clip else self.means
        return ((weights * means).sum(-4) + 1) / 2

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Images in [0, 1] on the 256 levels: a component per pixel, then a logistic draw, rounded."""
        with torch.no_grad():
            pick = pick_component(self.logits, -4, sample_shape)
            shape = pick.shape[:-4] + self.logits.shape[-4:]
            mean = torch.gather(self.means.expand(shape), -4, pick).squeeze(-4)
            log_scale = torch.gather(self.log_scales.expand(shape), -4, pick).squeeze(-4)
            return (logistic_level(mean, log_scale) + 1) / 2


class CoupledLogisticMixture(Distribution):
    """RGB pixels: a mixture over components shared by a pixel's channels, each component R, then G
    given R, then B given R and G (PixelCNN++ sec. 2.2); event (3, H, W).

    Parameters: logits (..., M, H, W); means, log-scales and tanh'd coefficients (alpha, beta, gamma)
    (..., M, 3, H, W), means in [-1, 1] units.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.unit_interval

    def __init__(
        self, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, coeffs: torch.Tensor
    ) -> None:
        self.logits, self.means, self.log_scales, self.coeffs = logits, means, log_scales, coeffs
        super().__init__(logits.shape[:-3], means.shape[-3:], validate_args=False)

    def _coupled_means(self, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(..., M, 3, H, W) means of R, G | R and B | R, G for pixel values r, g in [-1, 1]."""
        mu_r, mu_g, mu_b = self.means.unbind(-3)
        alpha, beta, gamma = self.coeffs.unbind(-3)
        coupled = torch.broadcast_tensors(mu_r, mu_g + alpha * r, mu_b + beta * r + gamma * g)
        return torch.stack(coupled, dim=-3)

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        """log P_k(channel c = value_c | the pixel's earlier channels) for every component k,
        shape (..., M, 3, H, W); ``value`` (..., 3, H, W) in [0, 1]."""
        level, x = to_levels(value)
        level, x = level.unsqueeze(-4), x.unsqueeze(-4)  # (..., 1, 3, H, W)
        means = self._coupled_means(x[..., 0, :, :], x[..., 1, :, :])
        return log_bin_mass(level, x, means, self.log_scales)

    def log_prob_per_pixel(self, value: torch.Tensor) -> torch.Tensor:
        """log P(pixel = value) for every (RGB) pixel, shape (..., H, W)."""
        joint = self.component_log_probs(value).sum(-3)  # per component: R, G | R, B | R, G together
        return torch.logsumexp(log_softmax(self.logits, dim=-3) + joint, dim=-3)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(image) in nats, summed over the pixels."""
        return self.log_prob_per_pixel(value).sum((-2, -1))

    @property
    def mean(self) -> torch.Tensor:
        """Approximate expected image in [0, 1]: per component R's mean, G's at that R, B's at those
        R and G (each clipped to [-1, 1]), weighted by the mixture."""
        return self.expected(clip=True)

    def expected(self, clip: bool) -> torch.Tensor:
        """``mean`` with each channel's mean clipped to [-1, 1] or not: G's and B's means add the coupling
        terms to a tanh-bounded mean, so they can leave the range, and there the clip has no gradient."""
        bound = (lambda t: t.clamp(-1, 1)) if clip else (lambda t: t)
        mu_r, mu_g, mu_b = self.means.unbind(-3)
        alpha, beta, gamma = self.coeffs.unbind(-3)
        r = bound(mu_r)
        g = bound(mu_g + alpha * r)
        b = bound(mu_b + beta * r + gamma * g)
        weights = torch.softmax(self.logits, dim=-3).unsqueeze(-3)
        return ((weights * torch.stack([r, g, b], dim=-3)).sum(-4) + 1) / 2

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Images in [0, 1] on the 256 levels: a component per pixel, then R, G given the drawn R, B
        given the drawn R and G, each a logistic draw rounded to its level."""
        with torch.no_grad():
            pick = pick_component(self.logits, -3, sample_shape).unsqueeze(-3)  # (..., 1, 1, H, W)
            shape = pick.shape[:-4] + self.means.shape[-4:]
            index = pick.expand(*shape[:-4], 1, *shape[-3:])

            def chosen(t: torch.Tensor) -> torch.Tensor:
                return torch.gather(t.expand(shape), -4, index).squeeze(-4).unbind(-3)

            (mu_r, mu_g, mu_b), (s_r, s_g, s_b), (alpha, beta, gamma) = map(
                chosen, (self.means, self.log_scales, self.coeffs)
            )
            r = logistic_level(mu_r, s_r)
            g = logistic_level(mu_g + alpha * r, s_g)
            b = logistic_level(mu_b + beta * r + gamma * g, s_b)
            return (torch.stack([r, g, b], dim=-3) + 1) / 2


class LogisticMixtureLikelihood(LikelihoodPart):
    """p(x|z) = discretised logistic mixture, per pixel and channel or (``coupled``) per RGB pixel."""

    config_class = LogisticMixtureLikelihoodConfig

    discrete = True

    def __init__(self, config: LogisticMixtureLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        m = config.components
        if config.coupled:
            if channels != 3:
                raise ConfigError(
                    f"logistic_mixture with coupled: true couples R, G and B; these images have {channels} "
                    "channel(s): set coupled: false"
                )
            self.param_channels = 10 * m
        else:
            self.params_per_channel = 3 * m
            self.param_channels = channels * self.params_per_channel

    def _split(self, params: torch.Tensor) -> DiscretizedLogisticMixture | CoupledLogisticMixture:
        b, ch, h, w = params.shape
        m = self.config.components
        if ch != self.param_channels:
            raise ValueError(f"expected {self.param_channels} parameter channels, got {ch}")
        if self.config.coupled:
            logits = params[:, :m]
            means, log_scales, coeffs = params[:, m:].view(b, 3, m, 3, h, w).unbind(1)
            log_scales = log_scales.clamp(self.config.min_log_scale, MAX_LOG_SCALE)
            return CoupledLogisticMixture(logits, torch.tanh(means), log_scales, torch.tanh(coeffs))
        logits, means, log_scales = params.view(b, 3, m, ch // (3 * m), h, w).unbind(1)
        log_scales = log_scales.clamp(self.config.min_log_scale, MAX_LOG_SCALE)
        return DiscretizedLogisticMixture(logits, torch.tanh(means), log_scales)

    def forward(self, params: torch.Tensor) -> Distribution:
        return self._split(params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Expected image in [0, 1] (for grids and reconstructions)."""
        return self._split(params).mean

    def raw_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image from the component means unclipped (see ``LikelihoodPart.raw_mean``)."""
        return self._split(params).expected(clip=False)

    def guided_channels(self) -> int:
        """The mixture logits and the component means (the first channels in both layouts); log-scales and
        coupling coefficients stay the conditional pass's. Component k is the same decoder output in both
        passes, so this guides the image the mixture shows, not the mixture density itself."""
        m = self.config.components
        return 4 * m if self.config.coupled else 2 * self.param_channels // 3
