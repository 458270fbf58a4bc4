"""``npz``: images from a NumPy ``.npz`` file, the format ``vaelab sample`` writes.

Key ``images``: uint8 (N, H, W) or (N, H, W, C) with C in {1, 3}, or floats in [0, 1] (rounded to
uint8). Optional key ``labels``: integers >= 0 of shape (N,). The file is always opened with
``allow_pickle=False``: an .npz from elsewhere must not be able to run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vaelab.data.cache import Decoded, cached_decode
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError


def _images(path: Path, images: np.ndarray) -> np.ndarray:
    """Validate the ``images`` array and return it as uint8 (N, C, H, W)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
        hint = ""
        if images.ndim == 4 and images.shape[1] in (1, 3):
            hint = " It looks channels-first: save images.transpose(0, 2, 3, 1) instead."
        raise DataError(
            f"{path}: 'images' has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3 "
            f"and N, H, W >= 1.{hint}"
        )
    if images.dtype == np.uint8:
        converted = images
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            bad = int(images.size - np.isfinite(images).sum())
            raise DataError(
                f"{path}: 'images' holds {bad} NaN or infinite value(s); expected floats in [0, 1]."
            )
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{path}: float 'images' range over [{low:g}, {high:g}]; expected [0, 1]. Rescale them, or "
                f"save uint8 pixels 0..255."
            )
        converted = np.rint(images.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise DataError(
            f"{path}: 'images' has dtype {images.dtype}; expected uint8 (0..255) or float in [0, 1]. "
            f"Convert it, e.g. images.astype(np.uint8) for integer pixels 0..255."
        )
    return np.ascontiguousarray(converted.transpose(0, 3, 1, 2))


def _labels(path: Path, labels: np.ndarray, count: int) -> np.ndarray:
    """Validate the optional ``labels`` array and return it as int64 (N,)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: 'labels' has dtype {labels.dtype}; expected integers (class indices 0..K-1)."
        )
    if labels.shape != (count,):
        raise DataError(f"{path}: 'labels' has shape {labels.shape}; expected ({count},), one per image.")
    if count and labels.min() < 0:
        raise DataError(f"{path}: 'labels' holds negative value {labels.min()}; expected class indices >= 0.")
    return labels.astype(np.int64)


def _decode_npz(path: Path) -> Decoded:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise DataError(
                    f"{path} has no 'images' array (it holds: {', '.join(archive.files) or 'nothing'}). "
                    f"Save the pixels under the key 'images'."
                )
            raw_images = archive["images"]
            raw_labels = archive["labels"] if "labels" in archive.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path} cannot be read as a NumPy .npz ({error}). Object arrays are refused (no pickle): "
            f"save plain numeric arrays with np.savez."
        ) from error
    images = _images(path, raw_images)
    labels = None if raw_labels is None else _labels(path, raw_labels, len(images))
    num_classes = None if labels is None else int(labels.max()) + 1
    return Decoded(images, labels, {"num_classes": num_classes})


def load_npz(cfg: DataConfig, progress: bool) -> ImageDataset:
    """All images of ``cfg.path`` (the registry holds out a fixed test part; see ``registry.py``)."""
    del progress  # loading an .npz is one read
    if cfg.path is None:
        raise DataError("data.name is 'npz' but data.path is not set: set it to a .npz file.")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.path {path} is not a file. Set data.path to a .npz file with an 'images' array."
        )
    stat = path.stat()
    # Size and mtime identify the content without hashing a possibly large file on every load.
    identity = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return cached_decode("npz", identity, lambda: _decode_npz(path)).to_dataset(path.stem)
