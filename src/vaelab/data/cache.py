"""Decode once, then load the uint8 arrays straight from disk.

A source is identified by what makes its decoded pixels what they are (the files' sha256 values,
or paths, sizes and mtimes, plus the decode settings); the hash of that identity names the cache
entry. An entry is ``<stem>.images.npy`` (uint8 N,C,H,W), an optional ``<stem>.labels.npy`` (int64)
and ``<stem>.json`` with the metadata; the JSON is written last, so its presence means the entry is
complete. A corrupt or unreadable entry is rebuilt, never fatal; an unwritable cache folder only
costs the next run a decode.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.dataset import ImageDataset
from vaelab.data.files import cache_dir
from vaelab.io.atomic import atomic_save

# Bump when the decoding of any source changes, so old entries are no longer matched.
CACHE_VERSION = 1


@dataclass
class Decoded:
    """What a decoder produces and the cache stores: arrays plus JSON-able metadata."""

    images: np.ndarray  # uint8 (N, C, H, W), C-contiguous
    labels: np.ndarray | None  # int64 (N,)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dataset(self, name: str) -> ImageDataset:
        """Wrap the arrays as an :class:`ImageDataset` without copying (``torch.from_numpy``)."""
        class_names = self.meta.get("class_names")
        return ImageDataset(
            images=torch.from_numpy(self.images),
            labels=None if self.labels is None else torch.from_numpy(self.labels),
            name=name,
            num_classes=self.meta.get("num_classes"),
            class_names=None if class_names is None else tuple(class_names),
        )


def cache_key(source: str, identity: object) -> str:
    """File stem of the cache entry for ``identity`` (any JSON-able value) of a ``source`` kind."""
    blob = json.dumps({"v": CACHE_VERSION, "source": source, "id": identity}, sort_keys=True)
    return f"{source}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def _paths(stem: str) -> tuple[Path, Path, Path]:
    root = cache_dir()
    return root / f"{stem}.images.npy", root / f"{stem}.labels.npy", root / f"{stem}.json"


def _read(stem: str) -> Decoded | None:
    """The cached entry, None when absent; raises (any exception) when it is there but broken."""
    images_path, labels_path, meta_path = _paths(stem)
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    images = np.load(images_path, allow_pickle=False)
    if images.dtype != np.uint8 or list(images.shape) != meta["shape"]:
        raise ValueError(f"holds {images.dtype} {images.shape}, its metadata says uint8 {meta['shape']}")
    labels = None
    if meta["has_labels"]:
        labels = np.load(labels_path, allow_pickle=False)
        if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
            raise ValueError(f"labels are {labels.dtype} {labels.shape}, expected int64 ({images.shape[0]},)")
    return Decoded(images=images, labels=labels, meta=meta["meta"])


def _write(stem: str, decoded: Decoded) -> None:
    images_path, labels_path, meta_path = _paths(stem)
    atomic_save(images_path, lambda handle: np.save(handle, decoded.images, allow_pickle=False))
    if decoded.labels is not None:
        atomic_save(labels_path, lambda handle: np.save(handle, decoded.labels, allow_pickle=False))
    record = {
        "shape": list(decoded.images.shape),
        "has_labels": decoded.labels is not None,
        "meta": decoded.meta,
    }
    atomic_save(meta_path, lambda handle: handle.write(json.dumps(record, indent=1).encode()))


def cached_decode(source: str, identity: object, decode: Callable[[], Decoded]) -> Decoded:
    """The decoded arrays of ``identity``: read from the cache, else ``decode()`` and cache them."""
    stem = cache_key(source, identity)
    try:
        hit = _read(stem)
    except Exception as error:  # any damage (truncated .npy, bad JSON, ...) means: rebuild
        warnings.warn(
            f"Decode cache entry {_paths(stem)[2]} is unreadable ({error}); decoding the source again.",
            stacklevel=3,
        )
        hit = None
    if hit is not None:
        return hit
    decoded = decode()
    try:
        _write(stem, decoded)
    except OSError as error:
        warnings.warn(
            f"Could not write the decode cache under {cache_dir()} ({error}); the next load will decode "
            "again. Set VAELAB_CACHE to a writable folder to cache.",
            stacklevel=3,
        )
    return decoded
