"""``load_dataset``: pick a loader by ``cfg.name`` from the ``DATASETS`` registry.

``mnist`` and ``fashion-mnist`` have official train and test files, and an ``npz`` file may hold
its own train and test arrays (see ``npz.py``). ``digits``, ``folder``, ``dsprites`` and an ``npz``
with a single ``images`` array do not, so their test split is a fixed held-out part: the last
``HOLDOUT_FRACTION`` (1/6, MNIST's own 10k-of-60k ratio) of a permutation seeded with
``HOLDOUT_SEED``. It depends only on the source, never on ``cfg.split_seed``, so "test" names the
same images in every run, and train and test never overlap. A validation set is carved out of
"train" afterwards with ``ImageDataset.split(cfg.val_fraction, cfg.split_seed)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.digits import load_digits
from vaelab.data.dsprites import load_dsprites
from vaelab.data.errors import DataError
from vaelab.data.folder import load_folder
from vaelab.data.idx import load_idx_dataset
from vaelab.data.npz import load_npz
from vaelab.data.packed import PackedDataset, open_packed

Split = Literal["train", "test"]
Loader = Callable[[DataConfig, Split, bool], ImageDataset]

HOLDOUT_FRACTION = 1 / 6
HOLDOUT_SEED = 0


def holdout_part(dataset: ImageDataset, split: Split) -> ImageDataset:
    """The fixed train or held-out test part of a whole source."""
    train, test = dataset.split(HOLDOUT_FRACTION, HOLDOUT_SEED)
    return train if split == "train" else test


def with_holdout(load_all: Callable[[DataConfig, bool], ImageDataset]) -> Loader:
    """Turn a loader of a whole source into one that serves its fixed train / test parts."""

    def load(cfg: DataConfig, split: Split, progress: bool) -> ImageDataset:
        return holdout_part(load_all(cfg, progress), split)

    load.__doc__ = f"{load_all.__doc__}\n\nServed as a fixed train / held-out test split."
    return load


def load_npz_split(cfg: DataConfig, split: Split, progress: bool) -> ImageDataset:
    """An .npz file: its own train / test arrays when it holds them, else the fixed held-out split."""
    return load_npz(cfg, split, progress, holdout_part)


def load_packed(cfg: DataConfig, split: Split, progress: bool) -> PackedDataset:
    """A packed directory (``vaelab data pack``), read lazily through memory maps. Its test split is
    the trailing ``HOLDOUT_FRACTION`` as one contiguous range (packing shuffles, so a tail is fair)."""
    if not cfg.path:
        raise DataError("data.name=packed needs data.path (or --data-path): the packed directory")
    train, test = open_packed(cfg.path).split(HOLDOUT_FRACTION)
    return train if split == "train" else test


DATASETS: dict[str, Loader] = {
    "mnist": load_idx_dataset,
    "fashion-mnist": load_idx_dataset,
    "digits": with_holdout(load_digits),
    "folder": with_holdout(load_folder),
    "npz": load_npz_split,
    "packed": load_packed,
    "dsprites": with_holdout(load_dsprites),
}


def load_dataset(
    cfg: DataConfig, split: Split = "train", progress: bool = True
) -> ImageDataset | PackedDataset:
    """The ``split`` ("train" or "test") of the dataset ``cfg`` describes, as one uint8 tensor.

    Decoded once per source and cached on disk (see ``cache.py``); ``progress`` shows tqdm bars
    for downloads and folder decoding. Every data problem raises :class:`DataError`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    loader = DATASETS.get(cfg.name)
    if loader is None:
        raise DataError(f"Unknown dataset {cfg.name!r}; known: {', '.join(sorted(DATASETS))}.")
    return loader(cfg, split, progress)
