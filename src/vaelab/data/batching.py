"""One ``batches`` for every kind of dataset: in memory (index slices) or packed (memory-mapped blocks)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from vaelab.data.dataset import ImageDataset
from vaelab.data.dataset import batches as memory_batches
from vaelab.data.packed import PackedDataset, packed_batches


def batches(
    dataset: ImageDataset | PackedDataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """One epoch of (uint8 images, labels or None) batches; each index exactly once (see the two
    implementations for how each stays free of per-image Python)."""
    if isinstance(dataset, PackedDataset):
        for images, labels in packed_batches(dataset, batch_size, shuffle=shuffle, generator=generator):
            if drop_last and len(images) < batch_size:
                return
            yield images, labels
        return
    yield from memory_batches(dataset, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
