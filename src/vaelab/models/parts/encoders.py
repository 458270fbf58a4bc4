"""Encoder parts: an image batch (B, C, H, W) in [0, 1] -> posterior parameters (B, out_features)."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from vaelab.models.part_config import (
    ConvStackConfig,
    MLPConfig,
)
from vaelab.models.parts.base import EncoderPart
from vaelab.models.parts.layers import (
    Conv2d,
    Shape,
    activation,
    conv_stack,
    halved_sides,
    mlp,
    patched_shape,
    to_patches,
)


class MLPEncoderConfig(MLPConfig):
    """Fully connected encoder: flattened image -> hidden layers -> posterior parameters."""

    name: Literal["mlp"] = "mlp"


class ConvEncoderConfig(ConvStackConfig):
    """Strided 3x3 convolutions (each halves the image side) -> linear layer -> posterior parameters."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (32, 64, 128)


class MLPEncoder(EncoderPart):
    """The seed article's encoder: the flattened image through fully connected layers."""

    config_class = MLPEncoderConfig

    def __init__(self, config: MLPEncoderConfig, image_shape: Shape, out_features: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.net = mlp(c * h * w, config.hidden_dims, out_features, config.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class ConvEncoder(EncoderPart):
    """Strided convolutions halve the side at each layer, then one hidden linear layer."""

    config_class = ConvEncoderConfig

    def __init__(self, config: ConvEncoderConfig, image_shape: Shape, out_features: int) -> None:
        super().__init__()
        self.to_patches = to_patches(config.patch)
        c, h, w = patched_shape(image_shape, config.patch, "conv encoder")
        layers: list[nn.Module] = []
        width = c
        for ch in config.channels:
            if config.convs_per_stage:  # widen at this resolution, then convolve at the width
                layers += [Conv2d(width, ch, 3, padding=1), activation(config.activation)]
                layers += conv_stack(ch, config.convs_per_stage - 1, config.activation)
                width = ch
            layers += [Conv2d(width, ch, 3, stride=2, padding=1), activation(config.activation)]
            width = ch
        self.conv = nn.Sequential(*layers)
        n = len(config.channels)
        flat = width * halved_sides(h, n)[-1] * halved_sides(w, n)[-1]
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(flat, config.hidden_dim),
            activation(config.activation),
            nn.Linear(config.hidden_dim, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.to_patches(x)))
