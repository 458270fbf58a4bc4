"""An autoregressive likelihood: each pixel's logistic mixture also sees the pixels before it.

PixelVAE (Gulrajani et al. 2017) and PixelCNN++ (Salimans et al. 2017) in their smallest useful form.
The decoder gives, as for ``logistic_mixture``, the mixture parameters of every pixel from z; this part
adds a correction computed from the pixel's causal neighbourhood (the rows above and the pixels to its
left within a ``kernel`` x ``kernel`` window, through one masked convolution) and from the decoder's
parameters, so the distribution is

    p(x | z) = prod over pixels (raster order) of  M(x_ij | params_ij(z) + f(x_<ij, params_ij(z)))

with M the discretised logistic mixture (channel-coupled for RGB). Each factor is normalised over the
256 levels, so the product is a normalised distribution over 8-bit images and its NLL is bits/dim.

Why: the latent code of a VAE is a poor place to store what a pixel's neighbours already say (the fine
texture and the exact level of smooth regions: what PNG and WebP exploit); a small local autoregressive
head takes that part of the code length at a few thousand multiply-adds per pixel, and leaves z the
content that is not local. The price is sequential decoding: ``mean`` and ``sample`` visit the pixels one
at a time (each step computes only that pixel's window, so a 32 x 32 image is 1,024 cheap steps).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Distribution, constraints

from vaelab.models.parts.likelihoods import LikelihoodPart
from vaelab.models.parts.logistic import LogisticMixtureLikelihood, LogisticMixtureLikelihoodConfig


class PixelCNNLikelihoodConfig(LogisticMixtureLikelihoodConfig):
    """The logistic mixture (``logistic_mixture``'s fields) whose parameters also follow each pixel's
    causal neighbourhood through one masked convolution: a small PixelCNN head (PixelVAE) for
    likelihood. Normalised over 8-bit levels like the mixture; decoding is pixel by pixel."""

    name: Literal["pixelcnn"] = "pixelcnn"  # type: ignore[assignment]
    coupled: bool = True
    # The masked convolution's side (odd): a pixel sees kernel // 2 rows above it and kernel // 2
    # pixels to either side in those rows, and kernel // 2 pixels to its left.
    kernel: int = Field(default=5, ge=3)
    # Width of the head and its number of extra per-pixel (1 x 1) layers.
    hidden: int = Field(default=32, ge=1)
    depth: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _odd_kernel(self) -> PixelCNNLikelihoodConfig:
        if self.kernel % 2 == 0:
            raise ValueError(f"pixelcnn kernel must be odd (it is centred on the pixel); got {self.kernel}")
        return self


class CausalConv2d(nn.Conv2d):
    """A ``kernel`` x ``kernel`` convolution whose output at (i, j) reads only pixels strictly before
    (i, j) in raster order (PixelCNN's mask "A": the rows above, and the same row's left part)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones_like(self.weight)
        c = kernel // 2
        mask[:, :, c, c:] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def at(self, padded: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The output at pixel (i, j) alone, from the image zero-padded by ``kernel // 2`` on each side:
        (B, out, 1, 1). Equal to ``forward(x)[..., i:i+1, j:j+1]`` at a kernel's cost."""
        k = self.kernel_size[0]
        return F.conv2d(padded[:, :, i : i + k, j : j + k], self.weight * self.mask, self.bias)


class PixelCNNLikelihood(LikelihoodPart):
    """p(x|z): a logistic mixture per pixel whose parameters also follow the pixel's causal
    neighbourhood; see the module docstring."""

    config_class = PixelCNNLikelihoodConfig

    discrete = True
    sequential = True

    def __init__(self, config: PixelCNNLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        mixture = LogisticMixtureLikelihoodConfig(
            components=config.components, min_log_scale=config.min_log_scale, coupled=config.coupled
        )
        self.mixture = LogisticMixtureLikelihood(mixture, channels)
        self.param_channels = self.mixture.param_channels
        hidden = config.hidden
        self.context = CausalConv2d(channels, hidden, config.kernel)
        self.from_params = nn.Conv2d(self.param_channels, hidden, 1)
        self.hidden = nn.ModuleList(nn.Conv2d(hidden, hidden, 1) for _ in range(config.depth))
        self.out = nn.Conv2d(hidden, self.param_channels, 1)
        # Zero start: an untrained head leaves the decoder's mixture as it is (a plain
        # logistic_mixture), so training starts from the non-autoregressive model and adds context.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _head(self, context: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Pixel parameters: the decoder's ``params`` plus the correction from ``context`` (the causal
        convolution's output at the same pixels)."""
        h = F.silu(context + self.from_params(params))
        for layer in self.hidden:
            h = h + F.silu(layer(h))
        return params + self.out(h)

    def pixel_params(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mixture parameters of every pixel given the image ``x`` in [0, 1] (teacher forcing: pixel
        (i, j)'s parameters read only x before (i, j))."""
        return self._head(self.context(x * 2 - 1), params)

    def forward(self, params: torch.Tensor) -> Distribution:
        return AutoregressiveImage(self, params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image to show: pixels chosen one at a time, each the mixture's mean given the pixels
        already chosen (a greedy decode; the exact mean of an autoregressive model has no closed form)."""
        return self.decode(params, draw=False)

    @torch.no_grad()
    def decode(self, params: torch.Tensor, draw: bool) -> torch.Tensor:
        """Pixels in raster order from ``params`` (B, param_channels, H, W): each drawn from its mixture
        (``draw``) or set to the mixture's mean, then seen by the pixels after it. Images in [0, 1]."""
        b, _, h, w = params.shape
        r = self.config.kernel // 2
        channels = self.context.in_channels
        # The image in [-1, 1] units, zero-padded like the causal convolution's own padding.
        padded = params.new_zeros(b, channels, h + 2 * r, w + 2 * r)
        image = params.new_zeros(b, channels, h, w)
        for i in range(h):
            for j in range(w):
                p = self._head(self.context.at(padded, i, j), params[:, :, i : i + 1, j : j + 1])
                pixel_dist = self.mixture(p)
                pixel = pixel_dist.sample() if draw else pixel_dist.mean.clamp(0, 1)
                image[:, :, i : i + 1, j : j + 1] = pixel
                padded[:, :, i + r, j + r] = pixel[:, :, 0, 0] * 2 - 1
        return image


class AutoregressiveImage(Distribution):
    """The distribution ``PixelCNNLikelihood`` gives for one batch of decoder parameters; event
    (C, H, W). ``log_prob`` is one parallel pass (teacher forcing); ``sample`` and ``mean`` decode
    pixel by pixel."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.unit_interval

    def __init__(self, part: PixelCNNLikelihood, params: torch.Tensor) -> None:
        self.part, self.params = part, params
        h, w = params.shape[-2:]
        super().__init__(params.shape[:1], (part.context.in_channels, h, w), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(image) in nats: the sum over pixels of log M(x_ij | x before it, z)."""
        return self.part.mixture(self.part.pixel_params(self.params, value)).log_prob(value)

    @property
    def mean(self) -> torch.Tensor:
        return self.part.decode(self.params, draw=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """One image per parameter set, each pixel drawn given those drawn before it."""
        if len(sample_shape):
            raise ValueError("an autoregressive image is drawn one sample per parameter set")
        return self.part.decode(self.params, draw=True)
