"""The bases every part's config builds on, and the union of a kind's configs.

Each part's file holds its own config class (a ``PartConfig`` with a ``name`` literal) beside the part,
which names it as ``config_class``; ``vaelab.models.config`` builds each kind's union from the registry.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Activation = Literal["relu", "gelu", "silu", "elu", "tanh"]
# How a convolutional part lays out the latent: a vector, or a map at its lowest resolution.
LatentLayout = Literal["vector", "spatial"]


class PartConfig(BaseModel):
    """Base of every part config: frozen, and unknown keys are errors (typos never pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConvPartConfig(PartConfig):
    """Base of the convolutional parts: the optional space-to-depth patching they share."""

    # patch > 1: the encoder first folds each patch x patch block of pixels into channels
    # (PixelUnshuffle) and the decoder predicts them that way and unfolds them (PixelShuffle), so no
    # convolution runs on 1-3 channels at full resolution: several times faster on CPUs for the same
    # depth (docs/performance.md). The patch must divide the image sides; 1 = off.
    patch: int = Field(default=1, ge=1)


class MLPConfig(PartConfig):
    """What the fully connected encoder and decoder share: widths of the hidden layers, activation."""

    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (512, 256)
    activation: Activation = "relu"


class ConvStackConfig(ConvPartConfig):
    """What the plain convolutional encoder and decoder share."""

    hidden_dim: int = Field(default=256, ge=1)
    activation: Activation = "relu"
    # Stride-1 3x3 convolutions at each stage's width and resolution (VGG style): wide layers at full
    # (patched) resolution are where a CPU reaches its matmul peak. 0 = the classic stack of strided
    # (encoder) or upsampling (decoder) convolutions only.
    convs_per_stage: int = Field(default=0, ge=0)


def config_union(parts: Mapping[str, type]) -> Any:
    """The pydantic field type that accepts any registered part's config, told apart by ``name``: the
    union of each part class's ``config_class``. Each registry key must be its config's ``name``."""
    for key, part in parts.items():
        if part.config_class.model_fields["name"].default != key:
            raise TypeError(f"registry name {key!r} differs from {part.config_class.__name__}'s name")
    members = functools.reduce(operator.or_, (part.config_class for part in parts.values()))
    return Annotated[members, Field(discriminator="name")]
