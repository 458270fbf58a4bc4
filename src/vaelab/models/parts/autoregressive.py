"""An autoregressive likelihood: each pixel's distribution also sees the pixels before it.

PixelVAE (Gulrajani et al. 2017) and PixelCNN++ (Salimans et al. 2017) in their smallest useful form.
The decoder gives, as for ``logistic_mixture``, the mixture parameters of every pixel from z; this part
adds a correction computed from the pixel's causal neighbourhood (the rows above and the pixels to its
left within a ``kernel`` x ``kernel`` window, through one masked convolution) and from the decoder's
parameters, so the distribution is

    p(x | z) = prod over pixels (raster order) of  M(x_ij | params_ij(z) + f(x_<ij, params_ij(z)))

with M the discretised logistic mixture (channel-coupled for RGB). Each factor is normalised over the
256 levels, so the product is a normalised distribution over 8-bit images and its NLL is bits/dim.
With ``pixel: bernoulli`` M is a Bernoulli per pixel and channel instead (binarised images, nats per
image): the same head on MNIST's binary digits, where the strokes' local continuity is what a
factorised Bernoulli decoder must otherwise buy with latent nats (PixelVAE's MNIST model).

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

from vaelab.models.parts.likelihoods import BernoulliLikelihood, BernoulliLikelihoodConfig, LikelihoodPart
from vaelab.models.parts.logistic import LogisticMixtureLikelihood, LogisticMixtureLikelihoodConfig


class PixelCNNLikelihoodConfig(LogisticMixtureLikelihoodConfig):
    """The logistic mixture (``logistic_mixture``'s fields) whose parameters also follow each pixel's
    causal neighbourhood: a small PixelCNN head (PixelVAE) for likelihood. Normalised over 8-bit levels
    like the mixture; decoding is pixel by pixel. ``pixel: bernoulli``: a Bernoulli per pixel instead
    (for binarised images; the mixture's fields are then unused)."""

    name: Literal["pixelcnn"] = "pixelcnn"  # type: ignore[assignment]
    pixel: Literal["logistic_mixture", "bernoulli"] = "logistic_mixture"
    coupled: bool = True
    # The masked convolution's side (odd): a pixel sees kernel // 2 rows above it and kernel // 2
    # pixels to either side in those rows, and kernel // 2 pixels to its left.
    kernel: int = Field(default=5, ge=3)
    # Width of the head, its gated residual layers (Gated PixelCNN's vertical and horizontal stacks, each
    # widening the causal window by a pixel; 0: none) and its extra per-pixel (1 x 1) layers after them.
    hidden: int = Field(default=32, ge=1)
    gated_layers: int = Field(default=0, ge=0)
    depth: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _odd_kernel(self) -> PixelCNNLikelihoodConfig:
        if self.kernel % 2 == 0:
            raise ValueError(f"pixelcnn kernel must be odd (it is centred on the pixel); got {self.kernel}")
        return self


class CausalConv2d(nn.Conv2d):
    """A ``kernel`` x ``kernel`` convolution whose output at (i, j) reads only pixels strictly before
    (i, j) in raster order (PixelCNN's mask "A": the rows above, and the same row's left part), or with
    ``rows_above`` only the rows above (the start of the vertical stack)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, rows_above: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones_like(self.weight)
        c = kernel // 2
        mask[:, :, c, 0 if rows_above else c :] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ShiftedConv2d(nn.Conv2d):
    """A (rows, cols) convolution whose output at (i, j) reads rows i - rows + 1 .. i and columns
    centred on j (``centred``) or ending at j: never a row below, and uncentred never a column right."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], centred: bool) -> None:
        super().__init__(in_channels, out_channels, kernel)
        rows, cols = kernel
        self.pad = (cols // 2, cols // 2, rows - 1, 0) if centred else (cols - 1, 0, rows - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


def gate(x: torch.Tensor) -> torch.Tensor:
    """PixelCNN's gated activation: tanh of the first half of the channels times sigmoid of the second."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedStackLayer(nn.Module):
    """One gated residual layer of the two stacks of Gated PixelCNN (van den Oord et al. 2016), which
    together see the whole causal past without a blind spot. The vertical stack ``v`` at (i, j) sees
    only rows above i and grows one row up and one column to each side per layer (a 2 x 3 convolution
    over its own rows i - 1 and i); the horizontal stack ``h`` sees the pixels before (i, j) and grows one
    column left (1 x 2) and reads ``v`` at the same pixel."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.vertical = ShiftedConv2d(hidden, 2 * hidden, (2, 3), centred=True)
        self.horizontal = ShiftedConv2d(hidden, 2 * hidden, (1, 2), centred=False)
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = nn.Conv2d(hidden, hidden, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.vertical(v)
        h_pre = self.horizontal(h) + self.v_to_h(v_pre)
        return v + gate(v_pre), h + self.h_out(gate(h_pre))


class PixelCNNLikelihood(LikelihoodPart):
    """p(x|z): a logistic mixture (or Bernoulli) per pixel whose parameters also follow the pixel's
    causal neighbourhood; see the module docstring."""

    config_class = PixelCNNLikelihoodConfig

    sequential = True

    def __init__(self, config: PixelCNNLikelihoodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.mixture: LikelihoodPart
        if config.pixel == "bernoulli":
            self.mixture = BernoulliLikelihood(BernoulliLikelihoodConfig(), channels)
        else:
            mixture = LogisticMixtureLikelihoodConfig(
                components=config.components, min_log_scale=config.min_log_scale, coupled=config.coupled
            )
            self.mixture = LogisticMixtureLikelihood(mixture, channels)
        # Normalised over 256 levels (bits/dim) exactly when the per-pixel part is: the mixture is, a
        # Bernoulli over binary pixels is not.
        self.discrete = self.mixture.discrete  # type: ignore[misc]
        self.param_channels = self.mixture.param_channels
        hidden = config.hidden
        self.context = CausalConv2d(channels, hidden, config.kernel)
        self.from_params = nn.Conv2d(self.param_channels, hidden, 1)
        # The optional gated stacks: a vertical stack started from the rows above, then the layers.
        self.above = (
            CausalConv2d(channels, hidden, config.kernel, rows_above=True) if config.gated_layers else None
        )
        self.stack = nn.ModuleList(GatedStackLayer(hidden) for _ in range(config.gated_layers))
        self.hidden = nn.ModuleList(nn.Conv2d(hidden, hidden, 1) for _ in range(config.depth))
        self.out = nn.Conv2d(hidden, self.param_channels, 1)
        # Zero start: an untrained head leaves the decoder's mixture as it is (a plain
        # logistic_mixture), so training starts from the non-autoregressive model and adds context.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # How far pixel (i, j)'s parameters reach: rows i - reach .. i, columns j - reach .. j + reach.
        self.reach = config.kernel // 2 + config.gated_layers

    def pixel_params(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mixture parameters of every pixel given the image ``x`` in [0, 1] (teacher forcing: pixel
        (i, j)'s parameters read only x before (i, j)): the decoder's ``params`` plus a correction from
        the causal context."""
        x = x * 2 - 1
        h = self.context(x) + self.from_params(params)
        if self.above is not None:
            v = self.above(x)
            for layer in self.stack:
                v, h = layer(v, h)
        h = F.silu(h)
        for layer in self.hidden:
            h = h + F.silu(layer(h))
        return params + self.out(h)

    def forward(self, params: torch.Tensor) -> Distribution:
        return AutoregressiveImage(self, params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image to show: pixels chosen one at a time, each the mixture's mean (a Bernoulli's more
        likely value) given the pixels already chosen (a greedy decode; the exact mean of an
        autoregressive model has no closed form)."""
        return self.decode(params, draw=False)

    def params_at(self, params: torch.Tensor, image: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Pixel (i, j)'s mixture parameters (B, param_channels, 1, 1), equal to
        ``pixel_params(params, image)[..., i:i+1, j:j+1]`` at the cost of a small window: the head runs on
        the crop of rows i - reach .. i and columns j - reach .. j + reach, which holds everything the
        pixel reads through every layer (zero padding at a crop edge inside the image only changes
        values that pixel (i, j) does not read)."""
        top, left, right = max(0, i - self.reach), max(0, j - self.reach), j + self.reach + 1
        window = (slice(None), slice(None), slice(top, i + 1), slice(left, right))
        return self.pixel_params(params[window], image[window])[:, :, -1:, j - left : j - left + 1]

    @torch.no_grad()
    def decode(self, params: torch.Tensor, draw: bool) -> torch.Tensor:
        """Pixels in raster order from ``params`` (B, param_channels, H, W): each drawn from its mixture
        (``draw``) or set to the mixture's mean (a Bernoulli's mode: the head was trained on binary
        context, never on probabilities), then seen by the pixels after it. Images in [0, 1]."""
        b, _, h, w = params.shape
        image = params.new_zeros(b, self.context.in_channels, h, w)
        for i in range(h):
            for j in range(w):
                pixel_dist = self.mixture(self.params_at(params, image, i, j))
                if draw:
                    pixel = pixel_dist.sample()
                elif self.config.pixel == "bernoulli":
                    pixel = (pixel_dist.mean > 0.5).to(image.dtype)
                else:
                    pixel = pixel_dist.mean.clamp(0, 1)
                image[:, :, i : i + 1, j : j + 1] = pixel
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
