"""Builders for tiny IDX files and sources, shared by the data tests."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from vaelab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxFile, IdxSource

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO / "../shared/datasets"
NOT_OFFICIAL = "0" * 64  # an "official" checksum no test file has


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of a uint8 array: magic (0x08 = ubyte, then ndim), big-endian dims, data."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """Write ``array`` as IDX to ``path``, gzipped when the name ends in .gz."""
    blob = idx_bytes(array, magic)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(folder: Path, *paths: Path) -> None:
    """A SHA256SUMS in ``folder`` declaring the current checksum of each of ``paths``."""
    lines = [f"{sha256(path)}  {path.name}" for path in paths]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def tiny_arrays(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 uint8 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def tiny_source(n_train: int = 6, n_test: int = 4, official: dict[str, str] | None = None) -> IdxSource:
    """An IDX source like MNIST but with tiny counts; checksums default to ones nothing matches."""
    official = official or {}

    def spec(stem: str, magic: int, shape: tuple[int, ...]) -> IdxFile:
        return IdxFile(stem, magic, shape, official.get(f"{stem}.gz", NOT_OFFICIAL), NOT_OFFICIAL)

    return IdxSource(
        name="tiny",
        title="Tiny",
        mirrors=("https://mirror-a.invalid/", "https://mirror-b.invalid/"),
        splits={
            "train": (
                spec("train-images-idx3-ubyte", IMAGES_MAGIC, (n_train, 28, 28)),
                spec("train-labels-idx1-ubyte", LABELS_MAGIC, (n_train,)),
            ),
            "test": (
                spec("t10k-images-idx3-ubyte", IMAGES_MAGIC, (n_test, 28, 28)),
                spec("t10k-labels-idx1-ubyte", LABELS_MAGIC, (n_test,)),
            ),
        },
        num_classes=10,
    )
