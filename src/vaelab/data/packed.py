"""Packed datasets: data larger than memory, as sharded uint8 ``.npy`` arrays plus an index file.

Layout of a packed directory::

    DIR/index.json            format, image shape, counts, shard list with sha256, class names
    DIR/images-00000.npy      uint8 (n_0, C, H, W), C-contiguous, standard .npy (readable by numpy)
    DIR/images-00001.npy      ...
    DIR/labels.npy            int64 (N,) (only for labelled data)

Training reads it through memory maps in large contiguous slices: an epoch visits *blocks* of
``block_images`` consecutive images in a seeded random order and shuffles within each block, so
every read is sequential and resident memory stays near two blocks, whatever the dataset size.
Each block's map is dropped after it is copied, so its pages never pile up in the process's RSS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError
from vaelab.data.files import sha256_file
from vaelab.io.atomic import atomic_open, atomic_save, atomic_write_text

INDEX_NAME = "index.json"
FORMAT = "vaelab-packed"
VERSION = 1
DEFAULT_BLOCK_IMAGES = 65536


class PackWriter:
    """Write a packed dataset chunk by chunk (the source never has to fit in memory).

    ``append`` uint8 (n, C, H, W) arrays; a shard is closed when it reaches ``shard_bytes``.
    ``close`` writes labels and, last, the index: a directory without ``index.json`` is incomplete.
    """

    def __init__(
        self,
        out: str | Path,
        image_shape: tuple[int, int, int],
        *,
        name: str = "packed",
        shard_bytes: int = 256 << 20,
        class_names: tuple[str, ...] | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / INDEX_NAME).unlink(missing_ok=True)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.per_image = int(np.prod(self.image_shape))
        self.shard_images = max(1, shard_bytes // self.per_image)
        self.name, self.class_names, self.num_classes = name, class_names, num_classes
        self.shards: list[dict] = []
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._labels: list[np.ndarray] = []

    def append(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add a chunk of images (uint8, (n, C, H, W)) and, for labelled data, their labels."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise DataError(
                f"pack: chunk must be uint8 {('n', *self.image_shape)}; got {images.dtype} {images.shape}"
            )
        if labels is not None:
            self._labels.append(np.asarray(labels, dtype=np.int64))
        while len(images):
            take = min(len(images), self.shard_images - self._pending_n)
            self._pending.append(images[:take])
            self._pending_n += take
            images = images[take:]
            if self._pending_n == self.shard_images:
                self._flush()

    def _flush(self) -> None:
        if not self._pending_n:
            return
        name = f"images-{len(self.shards):05d}.npy"
        path = self.out / name
        with atomic_open(path) as handle:
            np.lib.format.write_array_header_1_0(
                handle,
                {"descr": "|u1", "fortran_order": False, "shape": (self._pending_n, *self.image_shape)},
            )
            for chunk in self._pending:
                handle.write(chunk.tobytes())
        self.shards.append({"file": name, "count": self._pending_n, "sha256": sha256_file(path)})
        self._pending, self._pending_n = [], 0

    def close(self) -> Path:
        """Flush the last shard, write labels and the index; returns the directory."""
        self._flush()
        total = sum(s["count"] for s in self.shards)
        labels_file = None
        if self._labels:
            labels = np.concatenate(self._labels)
            if len(labels) != total:
                raise DataError(f"pack: {len(labels)} labels for {total} images")
            labels_file = "labels.npy"
            atomic_save(self.out / labels_file, lambda h: np.save(h, labels, allow_pickle=False))
        index = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "image_shape": list(self.image_shape),
            "num_images": total,
            "shards": self.shards,
            "labels": labels_file,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.class_names else None,
        }
        atomic_write_text(self.out / INDEX_NAME, json.dumps(index, indent=1) + "\n")
        return self.out


def pack_dataset(dataset: ImageDataset, out: str | Path, shard_bytes: int = 256 << 20) -> Path:
    """Pack an in-memory dataset (any source vaelab reads) into ``out``."""
    writer = PackWriter(
        out,
        dataset.image_shape,
        name=dataset.name,
        shard_bytes=shard_bytes,
        class_names=dataset.class_names,
        num_classes=dataset.num_classes,
    )
    step = max(1, writer.shard_images)
    for start in range(0, len(dataset), step):
        labels = None if dataset.labels is None else dataset.labels[start : start + step].numpy()
        writer.append(dataset.images[start : start + step].numpy(), labels)
    return writer.close()


@dataclass(frozen=True)
class PackedDataset:
    """A contiguous range [start, stop) of a packed directory, read lazily through memory maps."""

    root: Path
    image_shape: tuple[int, int, int]
    shard_files: tuple[Path, ...]
    shard_starts: tuple[int, ...]  # global index of each shard's first image (+ total at the end)
    labels: torch.Tensor | None = field(repr=False)
    name: str
    num_classes: int | None
    class_names: tuple[str, ...] | None
    start: int = 0
    stop: int = 0
    # Images one read pulls from the memory maps in ``packed_batches``: large blocks keep the reads
    # sequential; a shuffled epoch shuffles the blocks' order and the images within each block.
    block_images: int = DEFAULT_BLOCK_IMAGES

    def __len__(self) -> int:
        return self.stop - self.start

    def range(self, start: int, stop: int) -> PackedDataset:
        """A sub-range, relative to this one (no data is read)."""
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"range [{start}, {stop}) outside [0, {len(self)})")
        from dataclasses import replace

        return replace(self, start=self.start + start, stop=self.start + stop)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[PackedDataset, PackedDataset]:
        """(train, val) as the leading and trailing contiguous ranges, so both stay sequential reads.

        Packed data are shuffled when packed (``vaelab data pack --shuffle-seed``), so a tail is a
        fair sample; ``seed`` is accepted for the common interface and not needed.
        """
        n_val = round(len(self) * val_fraction)
        return self.range(0, len(self) - n_val), self.range(len(self) - n_val, len(self))

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images [start, stop) of this range as one uint8 tensor (a copy), with their labels."""
        g0, g1 = self.start + start, self.start + stop
        parts = []
        for i, path in enumerate(self.shard_files):
            s0, s1 = self.shard_starts[i], self.shard_starts[i + 1]
            lo, hi = max(g0, s0), min(g1, s1)
            if lo >= hi:
                continue
            mm = np.load(path, mmap_mode="r")
            parts.append(np.array(mm[lo - s0 : hi - s0]))  # copy, then the map is released
            del mm
        images = torch.from_numpy(np.concatenate(parts) if len(parts) != 1 else parts[0])
        labels = None if self.labels is None else self.labels[g0:g1]
        return images, labels

    def to_memory(self) -> ImageDataset:
        """Load the whole range as an in-memory :class:`ImageDataset` (for small ranges)."""
        images, labels = self.read(0, len(self))
        return ImageDataset(images, labels, self.name, self.num_classes, self.class_names)


def open_packed(root: str | Path, verify: bool = False) -> PackedDataset:
    """Open a packed directory after checking its index and shard sizes (and sha256 if ``verify``)."""
    root = Path(root)
    index_path = root / INDEX_NAME
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{root} is not a packed dataset (no {INDEX_NAME}; was packing interrupted?)"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{index_path} is corrupt: {exc}") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{index_path} is not a {FORMAT} v{VERSION} index")
    shape = tuple(int(s) for s in index["image_shape"])
    files, starts = [], [0]
    for shard in index["shards"]:
        path = root / Path(shard["file"]).name
        try:
            mm = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"packed shard {path} is missing or unreadable: {exc}") from None
        if mm.dtype != np.uint8 or mm.shape != (shard["count"], *shape):
            raise DataError(
                f"packed shard {path} has {mm.dtype} {mm.shape}, index says {shard['count']} x {shape}"
            )
        del mm
        if verify and sha256_file(path) != shard["sha256"]:
            raise DataError(f"packed shard {path} fails its sha256 check: the file was altered or corrupted")
        files.append(path)
        starts.append(starts[-1] + shard["count"])
    labels = None
    if index.get("labels"):
        labels = torch.from_numpy(np.load(root / index["labels"], allow_pickle=False).astype(np.int64))
        if len(labels) != starts[-1]:
            raise DataError(f"{root / index['labels']} has {len(labels)} labels for {starts[-1]} images")
    names = tuple(index["class_names"]) if index.get("class_names") else None
    return PackedDataset(
        root,
        shape,
        tuple(files),
        tuple(starts),
        labels,
        index.get("name", "packed"),
        index.get("num_classes"),
        names,
        0,
        starts[-1],
    )


def packed_batches(
    dataset: PackedDataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """One epoch of (uint8 images, labels) batches, reading one contiguous block of
    ``dataset.block_images`` at a time.

    Shuffled: blocks in a random order, images shuffled within each block, the remainder of a block
    carried into the next batch. Every index appears exactly once per epoch.
    """
    n, block_images = len(dataset), dataset.block_images
    starts = list(range(0, n, block_images))
    if shuffle:
        starts = [starts[i] for i in torch.randperm(len(starts), generator=generator).tolist()]
    carry_x: torch.Tensor | None = None
    carry_y: torch.Tensor | None = None
    for s in starts:
        x, y = dataset.read(s, min(s + block_images, n))
        if shuffle:
            perm = torch.randperm(len(x), generator=generator)
            x = x.index_select(0, perm)
            y = None if y is None else y.index_select(0, perm)
        if carry_x is not None:
            x = torch.cat([carry_x, x])
            y = None if y is None or carry_y is None else torch.cat([carry_y, y])
        full = len(x) - len(x) % batch_size
        for b in range(0, full, batch_size):
            yield x[b : b + batch_size], None if y is None else y[b : b + batch_size]
        carry_x, carry_y = (x[full:], None if y is None else y[full:]) if full < len(x) else (None, None)
    if carry_x is not None and len(carry_x):
        yield carry_x, carry_y
