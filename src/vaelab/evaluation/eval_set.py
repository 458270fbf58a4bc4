"""The evaluation set: which images an evaluation sees, held in memory, binarised once with a recorded
seed, subset by seed.

The binarised-MNIST protocol: a model trained with dynamic binarisation is evaluated on the test set
binarised *once* with a recorded seed (the same binary images for every metric and every run with
that seed); ``--subset N`` then takes a seeded random subset of those images. The training loop's
cheap evaluation and health checks pick their images the same way.
"""

from __future__ import annotations

import torch

from vaelab.data import ImageDataset, PackedDataset, to_float
from vaelab.errors import UsageError
from vaelab.runtime import derive_seed

_BINARIZE_BATCH = 10_000  # fixed, so the binarised set does not depend on any batch-size option


def in_memory(dataset: ImageDataset | PackedDataset, limit: int | None = None) -> ImageDataset:
    """An in-memory ``ImageDataset`` from either kind of dataset; ``limit`` keeps a packed set's first
    images (packed data are shuffled when packed, so its first images are a fair sample)."""
    if isinstance(dataset, ImageDataset):
        return dataset
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return dataset.range(0, n).to_memory()


def fixed_inputs(dataset: ImageDataset, binarize: str, seed: int) -> ImageDataset:
    """The evaluation images, binarised once (stored as uint8 0/255) with a generator seeded by ``seed``.

    ``binarize="none"`` returns ``dataset`` unchanged; ``static`` thresholds; ``dynamic`` draws each
    pixel from Bernoulli(grey / 255) once, so every metric then sees the same binary images.
    """
    if binarize == "none":
        return dataset
    gen = torch.Generator().manual_seed(seed)
    parts = [
        to_float(dataset.images[i : i + _BINARIZE_BATCH], binarize, generator=gen).mul(255).to(torch.uint8)
        for i in range(0, len(dataset), _BINARIZE_BATCH)
    ]
    images = torch.cat(parts) if parts else dataset.images
    return ImageDataset(images, dataset.labels, dataset.name, dataset.num_classes, dataset.class_names)


def seeded_subset(dataset: ImageDataset, n: int | None, seed: int) -> ImageDataset:
    """``n`` images chosen at random with ``seed`` (kept in dataset order), or all of them."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise UsageError(f"--subset must be at least 1; got {n}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[:n].sort().values)


def evaluation_seeds(seed: int) -> tuple[int, int]:
    """The binarisation and subset seeds an evaluation with ``seed`` uses (recorded in its report)."""
    return derive_seed(seed, "binarize"), derive_seed(seed, "subset")


def evaluation_inputs(dataset: ImageDataset, binarize: str, subset: int | None, seed: int) -> ImageDataset:
    """The images ``vaelab evaluate --binarize BINARIZE --subset SUBSET --seed SEED`` scores: ``dataset``
    binarised once, then subset, each with its seed from ``evaluation_seeds``. Anything scored beside
    an evaluation (a peer's model in a benchmark) takes its images from here, so they are the same."""
    binarize_seed, subset_seed = evaluation_seeds(seed)
    return seeded_subset(fixed_inputs(dataset, binarize, binarize_seed), subset, subset_seed)
