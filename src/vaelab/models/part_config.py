"""The bases every part's config builds on, apart from ``config.py``.

A new part's file can then hold its own config class (a ``PartConfig`` with a ``name`` literal)
without importing ``vaelab.models.config``, which imports it to list it in the union of its kind.
"""

from __future__ import annotations

from typing import Literal

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
