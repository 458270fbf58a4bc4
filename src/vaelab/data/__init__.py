"""vaelab's data layer: datasets as one uint8 tensor, a fast batch iterator, verified files.

``load_dataset(cfg, split)`` returns an :class:`ImageDataset`; ``batches`` yields uint8 batches
from it; ``to_float`` turns a batch, once on its device, into the model's [0, 1] input.
"""

from vaelab.data.batching import batches
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset, to_float
from vaelab.data.errors import DataError
from vaelab.data.files import cache_dir, data_root
from vaelab.data.packed import PackedDataset, PackWriter, open_packed, pack_dataset
from vaelab.data.registry import DATASETS, HOLDOUT_FRACTION, HOLDOUT_SEED, load_dataset

__all__ = [
    "DATASETS",
    "HOLDOUT_FRACTION",
    "HOLDOUT_SEED",
    "DataConfig",
    "DataError",
    "ImageDataset",
    "PackWriter",
    "PackedDataset",
    "batches",
    "cache_dir",
    "data_root",
    "load_dataset",
    "open_packed",
    "pack_dataset",
    "to_float",
]
