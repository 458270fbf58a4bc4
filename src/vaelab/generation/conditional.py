"""Class labels for conditional sampling: parsing what a user asks for, balanced label sets, class grids."""

from __future__ import annotations

import torch

from vaelab.errors import UsageError
from vaelab.models.vae import VAE


def require_conditional(model: VAE) -> int:
    """The model's number of classes, or a UsageError saying it is unconditional."""
    if not model.num_classes:
        raise UsageError(
            "this model is unconditional: it was not trained with model.condition, so it takes no class "
            "(train one with --set model.condition.name=label)"
        )
    return int(model.num_classes)


def parse_classes(spec: str, num_classes: int) -> list[int]:
    """``"3"``, ``"1,7"`` or ``"all"`` -> the class indices asked for, each checked to be in range."""
    spec = spec.strip()
    if spec == "all":
        return list(range(num_classes))
    classes: list[int] = []
    for item in spec.split(","):
        try:
            c = int(item)
        except ValueError:
            raise UsageError(
                f"--class takes a class number, a comma-separated list or 'all'; got {spec!r}"
            ) from None
        if not 0 <= c < num_classes:
            raise UsageError(
                f"class {c} is out of range: this model has {num_classes} classes (0 to {num_classes - 1})"
            )
        classes.append(c)
    return classes


def balanced_labels(n: int, classes: list[int]) -> torch.Tensor:
    """``n`` int64 labels cycling through ``classes`` in contiguous blocks whose sizes differ by at most
    one (class ``classes[i]`` gets positions ``i * n // k`` to ``(i + 1) * n // k - 1``)."""
    if not classes:
        raise ValueError("at least one class is needed")
    k = len(classes)
    block = torch.arange(n) * k // n
    return torch.tensor(classes, dtype=torch.int64)[block]


def class_grid_latents(z: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of the ``len(z)`` latents once per class: (num_classes * len(z), D) latents and their labels,
    row-major by class, so a grid with ``len(z)`` images per row has one class per row and one latent
    per column (what changes down a column is only the label)."""
    per_class = len(z)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return z.repeat(num_classes, 1), labels
