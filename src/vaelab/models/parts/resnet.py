"""Residual convolutional encoder and decoder parts (the blocks of VDVAE, Child 2021).

The encoder walks stages from full resolution down (a stride-2 convolution between stages) and keeps
each stage's output: a hierarchical decoder (``ladder``) reads those features to build its posteriors.
The decoder walks the same sides back up. No normalisation layers: a batch statistic would make the
K importance samples of one image depend on each other. Instead each residual branch's last
convolution is scaled by sqrt(1 / total blocks) (VDVAE's init), so the sum of many residual branches
starts near the identity and deep stacks train without exploding activations.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from vaelab.errors import ConfigError
from vaelab.models.part_config import (
    Activation,
    ConvPartConfig,
    LatentLayout,
)
from vaelab.models.parts.base import DecoderPart, EncoderPart, Widths
from vaelab.models.parts.layers import (
    Conv2d,
    Shape,
    Upsample,
    activation,
    from_patches,
    patched_shape,
    to_patches,
)


class ResidualStackConfig(ConvPartConfig):
    """What the residual encoder and decoders share: stages of residual blocks, one per resolution."""

    channels: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(64, 64, 32), min_length=1)
    blocks_per_stage: int = Field(default=1, ge=1)
    activation: Activation = "silu"


class ResNetEncoderConfig(ResidualStackConfig):
    """Residual convolutional encoder (VDVAE-style blocks): one stage per resolution, full resolution
    first; each later stage halves the side with a stride-2 convolution. Image sides must be divisible
    by 2 ** (len(channels) - 1). Exposes its per-resolution features to a hierarchical decoder."""

    name: Literal["resnet"] = "resnet"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(32, 64, 64), min_length=1)
    # "vector": a linear layer maps the last stage to a latent vector (a compact code). "spatial": a
    # 1x1 convolution maps it to a latent map of latent_dim / side² channels at the last stage's side
    # (e.g. 8x8x4 for a 256-d latent), so each code position describes its own region of the image: a
    # faithful code for reconstruction (the KL-f4/f8 autoencoders of latent diffusion). The decoder
    # must say the same.
    latent: LatentLayout = "vector"


class ResNetDecoderConfig(ResidualStackConfig):
    """Residual convolutional decoder: linear layer -> stages of residual blocks, lowest resolution
    first, each later stage doubling the side (nearest upsampling + 3x3 convolution)."""

    name: Literal["resnet"] = "resnet"
    # "spatial": z is read as a latent map at the first stage's side (see ResNetEncoderConfig.latent).
    latent: LatentLayout = "vector"
    # How a patched decoder (patch > 1) reaches full resolution. "subpixel": its last convolution
    # predicts patch² values per position, rearranged into pixels (PixelShuffle; cheapest). "resize":
    # nearest upsampling by the patch, then a 3x3 convolution at full resolution (Odena et al. 2016),
    # which cannot lay a patch-periodic pattern over the image: under an adversarial loss the sub-pixel
    # output grows a 2-pixel checkerboard (docs/sharp.md), the resize output does not.
    output: Literal["subpixel", "resize"] = "subpixel"


def stage_sides(side: int, stages: int, what: str) -> list[int]:
    """Sides of each stage, full resolution first: 28 with 3 stages -> [28, 14, 7].

    The side must halve exactly at every stage (so the decoder can double its way back to the image
    and the encoder's features line up with the decoder's), else a ConfigError says what would work.
    """
    factor = 2 ** (stages - 1)
    if side % factor:
        raise ConfigError(
            f"{what}: an image side of {side} cannot be halved {stages - 1} times exactly "
            f"({stages} stages need sides divisible by {factor}); use fewer stages "
            "(shorter channels) or pad/crop the images"
        )
    return [side // 2**i for i in range(stages)]


def up_sides(config: ResidualStackConfig, out_shape: Shape, what: str) -> tuple[int, list[tuple[int, int]]]:
    """A residual decoder's output channels per (patched) position and the (height, width) of each of
    its stages, lowest resolution first: the geometry the ResNet and ladder decoders share."""
    c, h, w = patched_shape(out_shape, config.patch, what)
    n = len(config.channels)
    return c, list(zip(stage_sides(h, n, what), stage_sides(w, n, what), strict=True))[::-1]


def spatial_latent_channels(latent_dim: int, sides: tuple[int, int], what: str) -> int:
    """Channels of a spatial latent map: ``latent_dim`` numbers laid out as (channels, h, w)."""
    positions = sides[0] * sides[1]
    if latent_dim % positions:
        raise ConfigError(
            f"{what}: a spatial latent at the lowest stage's side {sides[0]}x{sides[1]} needs latent_dim "
            f"divisible by {positions}; got {latent_dim} (e.g. {positions * 4} for {sides[0]}x{sides[1]}x4)"
        )
    return latent_dim // positions


class ResBlock(nn.Module):
    """x + conv3x3(act(conv3x3(act(x)))): a pre-activation residual block of constant width.

    ``scale`` multiplies the last convolution's initial weights (VDVAE: sqrt(1 / number of blocks)),
    so that N stacked blocks add up to an O(1) change at initialisation.
    """

    def __init__(self, width: int, act: str, scale: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            activation(act),
            Conv2d(width, width, 3, padding=1),
            activation(act),
            Conv2d(width, width, 3, padding=1),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Conv2d)
        with torch.no_grad():
            last.weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def res_stage(width: int, blocks: int, act: str, scale: float) -> nn.Sequential:
    """``blocks`` residual blocks of one width."""
    return nn.Sequential(*[ResBlock(width, act, scale) for _ in range(blocks)])


class ResNetEncoder(EncoderPart):
    """Stem conv -> [residual stage, stride-2 conv] per resolution -> linear layer -> posterior params.

    ``feature_channels`` maps each stage's side to its width; ``forward_features`` returns those
    features (lowest resolution first) beside the posterior parameters.
    """

    config_class = ResNetEncoderConfig

    def __init__(self, config: ResNetEncoderConfig, image_shape: Shape, out_features: int) -> None:
        super().__init__()
        self.to_patches = to_patches(config.patch)
        c, h, w = patched_shape(image_shape, config.patch, "resnet encoder")
        n = len(config.channels)
        self.sides = stage_sides(h, n, "resnet encoder")
        stage_sides(w, n, "resnet encoder")
        scale = math.sqrt(1.0 / (n * config.blocks_per_stage))
        self.stem = Conv2d(c, config.channels[0], 3, padding=1)
        self.stages = nn.ModuleList(
            [res_stage(ch, config.blocks_per_stage, config.activation, scale) for ch in config.channels]
        )
        self.downs = nn.ModuleList(
            [
                Conv2d(cin, cout, 3, stride=2, padding=1)
                for cin, cout in zip(config.channels[:-1], config.channels[1:], strict=True)
            ]
        )
        self.feature_channels = {s: ch for s, ch in zip(self.sides, config.channels, strict=True)}
        low_shape = (config.channels[-1], self.sides[-1], w // 2 ** (n - 1))
        if config.latent == "spatial":
            # One (mean, log-variance) pair per latent channel and position; flattened channel-major so
            # that the posterior's chunk(2) gives all means, then all log-variances.
            maps = spatial_latent_channels(out_features // 2, low_shape[1:], "resnet encoder")
            self.head = nn.Sequential(
                activation(config.activation), Conv2d(low_shape[0], 2 * maps, 1), nn.Flatten(1)
            )
        else:
            self.head = nn.Sequential(
                activation(config.activation), nn.Flatten(1), nn.Linear(math.prod(low_shape), out_features)
            )

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(posterior parameters (B, out_features), {side: stage output (B, width, side, side')})."""
        h = self.stem(self.to_patches(x))
        features: dict[int, torch.Tensor] = {}
        for i, stage in enumerate(self.stages):
            h = stage(h)
            features[self.sides[i]] = h
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.head(h), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class ResNetDecoder(DecoderPart):
    """Linear layer -> [residual stage, upsample] per resolution, lowest first -> 3x3 conv to params."""

    config_class = ResNetDecoderConfig

    def __init__(
        self, config: ResNetDecoderConfig, latent_dim: int, out_shape: Shape, feature_channels: Widths = None
    ) -> None:
        super().__init__()
        c, sides = up_sides(config, out_shape, "resnet decoder")
        resize = config.output == "resize" and config.patch > 1
        self.from_patches = nn.Identity() if resize else from_patches(config.patch)
        n = len(config.channels)
        self.start_shape = (config.channels[0], *sides[0])
        scale = math.sqrt(1.0 / (n * config.blocks_per_stage))
        self.head: nn.Module
        if config.latent == "spatial":
            maps = spatial_latent_channels(latent_dim, sides[0], "resnet decoder")
            self.latent_shape = (maps, *sides[0])
            self.head = Conv2d(maps, config.channels[0], 3, padding=1)
        else:
            self.latent_shape = (latent_dim,)
            self.head = nn.Linear(latent_dim, math.prod(self.start_shape))
        layers: list[nn.Module] = []
        for i, ch in enumerate(config.channels):
            layers.append(res_stage(ch, config.blocks_per_stage, config.activation, scale))
            if i + 1 < n:
                layers.append(Upsample(ch, config.channels[i + 1]))
        layers.append(activation(config.activation))
        if resize:  # full resolution first, then one value per pixel and likelihood parameter
            layers.append(nn.Upsample(scale_factor=config.patch, mode="nearest"))
        layers.append(Conv2d(config.channels[-1], out_shape[0] if resize else c, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.activation_elements = max(ch * h * w for ch, (h, w) in zip(config.channels, sides, strict=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z.view(-1, *self.latent_shape)).view(-1, *self.start_shape)
        return self.from_patches(self.net(h))
