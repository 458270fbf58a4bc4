"""Conditioning parts: how a class label reaches the encoder and the decoder of a conditional VAE.

The conditional VAE of Sohn et al. 2015 ("Learning Structured Output Representation using Deep
Conditional Generative Models") models p(x|y) = ∫ p(x|z, y) p(z) dz with q(z|x, y): both networks see
the label. Any encoder and decoder part works unchanged: the encoder is built for one more input
channel, the decoder for ``num_classes`` more latent inputs.

An unconditional VAE holds ``Unconditional``, which adds nothing and refuses labels, so the VAE passes
labels the one way, ``check``, then ``encoder_input`` / ``decoder_input``, whatever the model is.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vaelab.errors import UsageError
from vaelab.models.part_config import (
    PartConfig,
)


class LabelConditionConfig(PartConfig):
    """Class-conditional VAE (Sohn et al. 2015): the label enters the encoder as an extra image
    channel (a learned map per class) and the decoder as a one-hot vector beside z."""

    name: Literal["label"] = "label"
    # None means "take it from the dataset" when a run starts (like image_shape).
    num_classes: int | None = Field(default=None, ge=2)


class Unconditional(nn.Module):
    """The conditioning part of an unconditional VAE: no label, no extra inputs, no parameters."""

    num_classes: int | None = None
    encoder_extra_channels = 0
    decoder_extra_dims = 0

    def check(self, labels: torch.Tensor | None, count: int, what: str = "images") -> None:
        """None; a UsageError if labels were given."""
        if labels is not None:
            raise UsageError("this VAE is unconditional: it takes no class labels")

    def encoder_input(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return x

    def decoder_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return z


class LabelConditioning(nn.Module):
    """The label as a learned image-sized map (an extra encoder channel) and as a one-hot for the decoder.

    A learned map per class (instead of ``num_classes`` one-hot planes) keeps the encoder's input at
    C + 1 channels whatever the number of classes, which matters for an MLP encoder on flattened images.
    """

    config_class = LabelConditionConfig

    def __init__(self, config: LabelConditionConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if config.num_classes is None:
            raise ValueError("model.condition.num_classes must be set (a run fills it from the dataset)")
        self.num_classes = config.num_classes
        _, h, w = image_shape
        self.spatial = (h, w)
        self.label_maps = nn.Embedding(config.num_classes, h * w)
        nn.init.normal_(self.label_maps.weight, std=0.1)

    @property
    def encoder_extra_channels(self) -> int:
        return 1

    @property
    def decoder_extra_dims(self) -> int:
        return self.num_classes

    def check(self, labels: torch.Tensor | None, count: int, what: str = "images") -> torch.Tensor:
        """The labels as int64, one for each of ``count`` images (or latents: ``what``), or a
        UsageError naming what is wrong (missing, out of range, too few or too many)."""
        if labels is None:
            raise UsageError(
                f"this VAE is conditional on {self.num_classes} classes: pass a class label per image"
            )
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dim() != 1:
            raise UsageError(f"labels must be a 1-D integer tensor; got {labels.dtype} {tuple(labels.shape)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(labels.max()) if int(labels.max()) >= self.num_classes else int(labels.min())
            raise UsageError(
                f"class {bad} is out of range: this model has {self.num_classes} classes "
                f"(0 to {self.num_classes - 1})"
            )
        if len(labels) != count:
            raise UsageError(f"got {len(labels)} labels for {count} {what}")
        return labels.long().to(self.label_maps.weight.device)

    def encoder_input(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) with the label's map appended as channel C: (B, C + 1, H, W)."""
        maps = self.label_maps(labels).view(-1, 1, *self.spatial).to(x.dtype)
        return torch.cat([x, maps], dim=1)

    def decoder_input(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Latents (B, D) with the one-hot label appended: (B, D + num_classes)."""
        return torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
