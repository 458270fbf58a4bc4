"""Conditioning parts: how a class label reaches the encoder and the decoder of a conditional VAE.

The conditional VAE of Sohn et al. 2015 ("Learning Structured Output Representation using Deep
Conditional Generative Models") models p(x|y) = ∫ p(x|z, y) p(z) dz with q(z|x, y): both networks see
the label. Any encoder and decoder part works unchanged: the encoder is built for one more input
channel, the decoder for ``num_classes`` more latent inputs.

An unconditional VAE holds ``Unconditional``, which adds nothing and refuses labels, so the VAE passes
labels the one way, ``check``, then ``encoder_input`` / ``decoder_input``, whatever the model is.

Classifier-free guidance (``vaelab.models.guidance``): with ``label_dropout`` p > 0 each training
image's label is replaced, with probability p, by the *null class* (index ``num_classes``: a learned map
of its own for the encoder, the all-zero one-hot for the decoder), so one network learns both
p(x|z, y) and p(x|z). A model trained without label dropout never saw the null class and refuses a
guidance other than 1 (``check_guidance``).
"""

from __future__ import annotations

import math
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
    # Classifier-free guidance: the probability that a training image's label is replaced by the null
    # class (Ho & Salimans 2022 use 0.1-0.2). 0 (the default, so that a saved config without the key
    # keeps its meaning and its weights): no null class, and sampling takes no guidance.
    label_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class Unconditional(nn.Module):
    """The conditioning part of an unconditional VAE: no label, no extra inputs, no parameters."""

    num_classes: int | None = None
    encoder_extra_channels = 0
    decoder_extra_dims = 0
    label_dropout = 0.0

    def check(self, labels: torch.Tensor | None, count: int, what: str = "images") -> None:
        """None; a UsageError if labels were given."""
        if labels is not None:
            raise UsageError("this VAE is unconditional: it takes no class labels")

    def encoder_input(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return x

    def decoder_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return z

    def drop_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return labels

    def check_guidance(self, guidance: float) -> None:
        """Nothing for guidance 1; a UsageError for any other (there is no label to guide towards)."""
        _check_guidance_value(guidance)
        if guidance != 1.0:
            raise UsageError(
                "guidance needs a conditional model trained with label dropout; this one is unconditional"
            )


def _check_guidance_value(guidance: float) -> None:
    if not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(
            f"guidance must be a finite number >= 0 (1: plain conditional sampling), got {guidance}"
        )


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
        self.label_dropout = config.label_dropout
        # With label dropout, one more map: the encoder's input for the null class.
        self.label_maps = nn.Embedding(config.num_classes + (config.label_dropout > 0), h * w)
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
        """Latents (B, D) with the one-hot label appended: (B, D + num_classes); the null class
        (index ``num_classes``) is the all-zero vector."""
        one_hot = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes]
        return torch.cat([z, one_hot.to(z.dtype)], dim=1)

    @property
    def null_class(self) -> int:
        """The index of the null class (no label), which only a model with label dropout has learnt."""
        return self.num_classes

    def null_labels(self, count: int) -> torch.Tensor:
        """``count`` null-class labels, for the unconditional half of a guided decode."""
        return torch.full((count,), self.null_class, dtype=torch.int64, device=self.label_maps.weight.device)

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Training only: each label replaced by the null class with probability ``label_dropout``
        (the global RNG draws the mask, so a seeded run repeats; no draw at all when it is 0)."""
        if not self.label_dropout:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def check_guidance(self, guidance: float) -> None:
        """Nothing when ``guidance`` is usable; else a UsageError saying why."""
        _check_guidance_value(guidance)
        if guidance != 1.0 and not self.label_dropout:
            raise UsageError(
                f"guidance {guidance:g} needs a model trained with label dropout (it learns the "
                "unconditional decoder that guidance extrapolates from); this one was trained without: "
                "retrain with --set model.condition.label_dropout=0.1, or sample with guidance 1"
            )
