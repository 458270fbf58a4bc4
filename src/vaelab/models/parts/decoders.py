"""Decoder parts: latents (B, latent_dim) -> likelihood parameters (B, out_channels, H, W).

A flat decoder is a hierarchical one without stochastic layers below the top latent: every decoder
answers ``top_down`` (``parts/base.py``), which for these is ``forward`` with no layer KLs.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from vaelab.models.part_config import (
    ConvStackConfig,
    MLPConfig,
)
from vaelab.models.parts.base import DecoderPart, Widths
from vaelab.models.parts.layers import (
    Conv2d,
    Shape,
    Upsample,
    activation,
    conv_stack,
    from_patches,
    halved_sides,
    mlp,
    patched_shape,
)


class MLPDecoderConfig(MLPConfig):
    """Fully connected decoder: latent -> hidden layers -> likelihood parameters per pixel."""

    name: Literal["mlp"] = "mlp"
    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (256, 512)


class ConvDecoderConfig(ConvStackConfig):
    """Linear layer -> upsampling 3x3 convolutions (each doubles the side) -> likelihood parameters;
    ``convs_per_stage`` convolutions follow each upsampling (the encoder's mirror)."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (128, 64, 32)
    # How each stage doubles the side: a stride-2 transposed convolution, or nearest-neighbour
    # upsampling and a 3x3 convolution (no checkerboard artefacts; not faster on the CPUs measured:
    # docs/benchmarks.md).
    upsample: Literal["transposed", "nearest"] = "transposed"


class MLPDecoder(DecoderPart):
    """The seed article's decoder: fully connected layers, reshaped to the image at the end."""

    config_class = MLPDecoderConfig

    def __init__(
        self, config: MLPDecoderConfig, latent_dim: int, out_shape: Shape, feature_channels: Widths = None
    ) -> None:
        super().__init__()
        self.out_shape = out_shape
        c, h, w = out_shape
        self.net = mlp(latent_dim, config.hidden_dims, c * h * w, config.activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class ConvDecoder(DecoderPart):
    """Mirror of the conv encoder: each stage doubles the side back towards the image size (a transposed
    convolution, or nearest upsampling + a 3x3 convolution), then ``convs_per_stage`` stride-1 ones
    (the last of them narrowing to the next stage's width)."""

    config_class = ConvDecoderConfig

    def __init__(
        self, config: ConvDecoderConfig, latent_dim: int, out_shape: Shape, feature_channels: Widths = None
    ) -> None:
        super().__init__()
        c, h, w = patched_shape(out_shape, config.patch, "conv decoder")
        self.from_patches = from_patches(config.patch)
        n = len(config.channels)
        # Sides the encoder would produce; the decoder walks them backwards so odd sizes (7 -> 14 -> 28,
        # 4 -> 7) come out exact via output_padding.
        hs, ws = halved_sides(h, n), halved_sides(w, n)
        self.start_shape = (config.channels[0], hs[-1], ws[-1])
        self.head = nn.Sequential(
            nn.Linear(latent_dim, config.hidden_dim),
            activation(config.activation),
            nn.Linear(config.hidden_dim, config.channels[0] * hs[-1] * ws[-1]),
            activation(config.activation),
        )
        layers: list[nn.Module] = []
        widths = (*config.channels[1:], config.channels[-1])
        for i, (cin, cout) in enumerate(zip(config.channels, widths, strict=True)):
            in_h, in_w, out_h, out_w = hs[n - i], ws[n - i], hs[n - i - 1], ws[n - i - 1]
            # With convs_per_stage the stage mirrors the encoder's: upsample at the input width, convolve
            # at it, and narrow in the last convolution; without, the upsampling narrows.
            up_out = cin if config.convs_per_stage else cout
            if config.upsample == "nearest":
                up: nn.Module = Upsample(cin, up_out, size=(out_h, out_w))
            else:
                pad = (out_h - (2 * in_h - 1), out_w - (2 * in_w - 1))
                up = nn.ConvTranspose2d(cin, up_out, 3, stride=2, padding=1, output_padding=pad)
            layers += [up, activation(config.activation)]
            if config.convs_per_stage:
                layers += conv_stack(cin, config.convs_per_stage - 1, config.activation)
                layers += [Conv2d(cin, cout, 3, padding=1), activation(config.activation)]
        layers.append(Conv2d(widths[-1], c, 3, padding=1))
        self.conv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.from_patches(self.conv(self.head(z).view(-1, *self.start_shape)))
