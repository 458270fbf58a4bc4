"""``npz``: images from a NumPy ``.npz`` file, the format ``vaelab sample`` writes.

Key ``images``: uint8 (N, H, W) or (N, H, W, C) with C in {1, 3}, or floats in [0, 1] (rounded to
uint8). Optional key ``labels``: integers >= 0 of shape (N,). Such a file has no test split of its
own, so the registry holds out a fixed part of it.

A file that ships its own split holds ``train_images`` and ``test_images`` (optional
``train_labels`` and ``test_labels``), or the Keras-style ``x_train`` and ``x_test`` (optional
``y_train`` and ``y_test``), each pair laid out like ``images`` / ``labels``. Then "train" and
"test" are exactly those arrays, so results compare with others who use the same file. Labels come
with both splits or neither, and ``num_classes`` is taken over both so the two splits agree. Other
keys (e.g. ``sources``, ``licenses``) are ignored; a file mixing ``images`` with split keys, or
holding half a pair, is refused rather than guessed at.

The file is always opened with ``allow_pickle=False``: an .npz from elsewhere must not be able to
run code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from vaelab.data.cache import Decoded, cached_decode
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError

Split = Literal["train", "test"]


class SplitKeys(NamedTuple):
    """Where a file with its own split keeps each array; labels are None when it has none."""

    train_images: str
    test_images: str
    train_labels: str | None
    test_labels: str | None


# The two naming schemes of files with their own split: vaelab's and Keras' (keras.datasets).
SPLIT_LAYOUTS = (
    SplitKeys("train_images", "test_images", "train_labels", "test_labels"),
    SplitKeys("x_train", "x_test", "y_train", "y_test"),
)
SINGLE_KEYS = ("images", "labels")


def _images(path: Path, images: np.ndarray, key: str = "images") -> np.ndarray:
    """Validate the images array stored under ``key`` and return it as uint8 (N, C, H, W)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
        hint = ""
        if images.ndim == 4 and images.shape[1] in (1, 3):
            hint = " It looks channels-first: save images.transpose(0, 2, 3, 1) instead."
        raise DataError(
            f"{path}: '{key}' has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3 "
            f"and N, H, W >= 1.{hint}"
        )
    if images.dtype == np.uint8:
        converted = images
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            bad = int(images.size - np.isfinite(images).sum())
            raise DataError(
                f"{path}: '{key}' holds {bad} NaN or infinite value(s); expected floats in [0, 1]."
            )
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{path}: float '{key}' range over [{low:g}, {high:g}]; expected [0, 1]. Rescale them, or "
                f"save uint8 pixels 0..255."
            )
        converted = np.rint(images.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise DataError(
            f"{path}: '{key}' has dtype {images.dtype}; expected uint8 (0..255) or float in [0, 1]. "
            f"Convert it, e.g. images.astype(np.uint8) for integer pixels 0..255."
        )
    return np.ascontiguousarray(converted.transpose(0, 3, 1, 2))


def _labels(path: Path, labels: np.ndarray, count: int, key: str = "labels") -> np.ndarray:
    """Validate the labels array stored under ``key`` (one per image) and return it as int64 (N,)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: '{key}' has dtype {labels.dtype}; expected integers (class indices 0..K-1)."
        )
    if labels.shape != (count,):
        raise DataError(f"{path}: '{key}' has shape {labels.shape}; expected ({count},), one per image.")
    if count and labels.min() < 0:
        raise DataError(f"{path}: '{key}' holds negative value {labels.min()}; expected class indices >= 0.")
    return labels.astype(np.int64)


@contextmanager
def _archive(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """The open archive, with ``allow_pickle=False``; any read error inside the block (also while
    reading an array from it) becomes one DataError naming the file."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single .npy array, not an .npz archive. Save it with "
                f"np.savez(path, images=...) instead."
            )
        with archive:
            yield archive
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path} cannot be read as a NumPy .npz ({error}). Object arrays are refused (no pickle): "
            f"save plain numeric arrays with np.savez."
        ) from error


def _split_keys(path: Path, keys: list[str]) -> SplitKeys | None:
    """The keys of a file with its own split, or None for a single ``images`` set; any other mix of
    known keys raises rather than be guessed at."""
    found = f"it holds: {', '.join(keys) or 'nothing'}"
    split_keys = [key for layout in SPLIT_LAYOUTS for key in layout if key in keys]
    single_keys = [key for key in SINGLE_KEYS if key in keys]
    layouts = [layout for layout in SPLIT_LAYOUTS if set(layout) & set(keys)]
    if split_keys and single_keys:
        raise DataError(
            f"{path} mixes {', '.join(single_keys)} with the split keys {', '.join(split_keys)} ({found}); "
            f"which images are the training set is ambiguous. Keep either 'images' (and 'labels') or "
            f"the train/test arrays."
        )
    if len(layouts) > 1:
        raise DataError(
            f"{path} mixes two naming schemes, {', '.join(split_keys)} ({found}). Use either "
            f"train_images/test_images/train_labels/test_labels or x_train/x_test/y_train/y_test."
        )
    if not layouts:
        if "images" not in keys:
            raise DataError(
                f"{path} has no 'images' array ({found}). Save the pixels under the key 'images', or a "
                f"train/test split as 'train_images' and 'test_images' (or 'x_train' and 'x_test')."
            )
        return None
    train_images, test_images, train_labels, test_labels = layouts[0]
    missing = [key for key in (train_images, test_images) if key not in keys]
    if not missing and (train_labels in keys) != (test_labels in keys):
        missing = [test_labels if train_labels in keys else train_labels]
    if missing:
        raise DataError(
            f"{path} has no {' or '.join(repr(key) for key in missing)} to complete its split keys "
            f"{', '.join(split_keys)} ({found}). A file with its own split needs {train_images} and "
            f"{test_images}, and labels for both splits or for neither."
        )
    has_labels = train_labels in keys
    return SplitKeys(
        train_images, test_images, train_labels if has_labels else None, test_labels if has_labels else None
    )


def _decode_single(path: Path) -> Decoded:
    """A file holding one ``images`` set (and optional ``labels``)."""
    with _archive(path) as archive:
        arrays = {key: archive[key] for key in SINGLE_KEYS if key in archive.files}
    images = _images(path, arrays["images"])
    labels = None if "labels" not in arrays else _labels(path, arrays["labels"], len(images))
    num_classes = None if labels is None else int(labels.max()) + 1
    return Decoded(images, labels, {"num_classes": num_classes})


def _decode_split(path: Path, keys: SplitKeys, split: Split) -> Decoded:
    """The ``split`` of a file with its own split. Both splits are checked, so a bad test array is
    reported when training starts, not when evaluation does."""
    with _archive(path) as archive:
        arrays = {key: archive[key] for key in keys if key is not None}
    images = {
        "train": _images(path, arrays[keys.train_images], keys.train_images),
        "test": _images(path, arrays[keys.test_images], keys.test_images),
    }
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise DataError(
            f"{path}: '{keys.train_images}' has shape {arrays[keys.train_images].shape} but "
            f"'{keys.test_images}' has {arrays[keys.test_images].shape}; both splits need the same height, "
            f"width and channels."
        )
    if keys.train_labels is None or keys.test_labels is None:
        return Decoded(images[split], None, {"num_classes": None})
    labels = {
        "train": _labels(path, arrays[keys.train_labels], len(images["train"]), keys.train_labels),
        "test": _labels(path, arrays[keys.test_labels], len(images["test"]), keys.test_labels),
    }
    # Over both splits, so train and test agree and a class seen only in test still has its index.
    num_classes = max(int(part.max()) for part in labels.values()) + 1
    return Decoded(images[split], labels[split], {"num_classes": num_classes})


def load_npz(
    cfg: DataConfig, split: Split, progress: bool, holdout: Callable[[ImageDataset, Split], ImageDataset]
) -> ImageDataset:
    """The ``split`` of ``cfg.path``: the file's own train or test arrays when it has them, else
    ``holdout(all its images, split)`` (the registry's fixed held-out part; see ``registry.py``)."""
    del progress  # loading an .npz is one read
    if cfg.path is None:
        raise DataError("data.name is 'npz' but data.path is not set: set it to a .npz file.")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.path {path} is not a file. Set data.path to a .npz file with an 'images' array."
        )
    with _archive(path) as archive:  # reads the key names only, no array
        keys = _split_keys(path, list(archive.files))
    stat = path.stat()
    # Size and mtime identify the content without hashing a possibly large file on every load.
    identity: dict[str, object] = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    if keys is None:
        return holdout(
            cached_decode("npz", identity, lambda: _decode_single(path)).to_dataset(path.stem), split
        )
    identity["split"] = split
    return cached_decode("npz", identity, lambda: _decode_split(path, keys, split)).to_dataset(path.stem)
