"""The npz loader: accepted layouts, a file's own train/test split, one clear error per kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab.data.npz
from vaelab.data import DataConfig, DataError, ImageDataset, load_dataset
from vaelab.data.npz import Split, load_npz

from .helpers import SHARED_DATASETS

PHOTOS32 = SHARED_DATASETS / "photos32" / "photos32.npz"


def whole(data: ImageDataset, split: Split) -> ImageDataset:
    """A holdout that keeps everything, so a single-``images`` file comes back complete."""
    return data


def load(path: Path, split: Split = "train") -> ImageDataset:
    return load_npz(DataConfig(name="npz", path=str(path)), split, progress=False, holdout=whole)


def npz_split(path: Path, split: Split) -> ImageDataset:
    """``split`` through the registry, as training and evaluation read it."""
    data = load_dataset(DataConfig(name="npz", path=str(path)), split, progress=False)
    assert isinstance(data, ImageDataset)
    return data


def write(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "set.npz"
    np.savez(path, **arrays)
    return path


def test_uint8_grayscale_with_labels(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    data = load(write(tmp_path, images=images, labels=np.array([2, 0, 1], dtype=np.int32)))
    assert data.images.shape == (3, 1, 4, 5) and data.images.is_contiguous()
    np.testing.assert_array_equal(data.images[:, 0].numpy(), images)
    assert data.labels is not None and data.labels.tolist() == [2, 0, 1] and data.num_classes == 3
    assert data.name == "set"


def test_uint8_rgb_channels_last(tmp_path: Path) -> None:
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[..., 2] = 255
    data = load(write(tmp_path, images=images))
    assert data.images.shape == (2, 3, 4, 4) and data.labels is None and data.num_classes is None
    assert data.images[:, 2].min() == 255 and data.images[:, :2].max() == 0


def test_float_images_rounded_to_uint8(tmp_path: Path) -> None:
    images = np.array([0.0, 0.5, 1.0, 0.499 / 255], dtype=np.float32).reshape(1, 2, 2, 1)
    data = load(write(tmp_path, images=images))
    assert data.images.flatten().tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"pixels": np.zeros((2, 4, 4), np.uint8)}, "no 'images' array.*pixels.*'x_train'"),
        ({"images": np.full((2, 4, 4), np.nan, np.float32)}, "NaN or infinite"),
        ({"images": np.full((2, 4, 4), np.inf)}, "NaN or infinite"),
        ({"images": np.full((2, 4, 4), 1.5)}, r"range over \[1.5, 1.5\]"),
        ({"images": np.zeros((2, 4, 4), np.int64)}, "dtype int64"),
        ({"images": np.zeros((2, 4, 4), bool)}, "dtype bool"),
        ({"images": np.zeros((2, 16), np.uint8)}, r"shape \(2, 16\)"),
        ({"images": np.zeros((2, 3, 4, 4), np.uint8)}, "channels-first"),
        ({"images": np.zeros((0, 4, 4), np.uint8)}, r"shape \(0, 4, 4, 1\)"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, np.int64)}, r"expected \(2,\)"),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2, np.float32)},
            "'labels' has dtype float32",
        ),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, -1])}, "negative"),
    ],
)
def test_bad_npz_raises_clear_error(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = write(tmp_path, **arrays)
    with pytest.raises(DataError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_unreadable_or_pickled_npz_is_refused(tmp_path: Path) -> None:
    pickled = write(tmp_path, images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="no pickle"):
        load(pickled)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz"):
        load(junk)
    with pytest.raises(DataError, match="not a file"):
        load(tmp_path / "absent.npz")
    single = tmp_path / "single.npz"
    np.save(tmp_path / "single.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "single.npy").rename(single)
    with pytest.raises(DataError, match=r"single\.npz holds a single \.npy array"):
        load(single)


def test_own_split_with_labels_is_served_as_is(tmp_path: Path) -> None:
    train = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    test = np.full((3, 2, 2, 3), 200, dtype=np.uint8)
    path = write(
        tmp_path,
        train_images=train,
        train_labels=np.array([0, 1, 1, 0]),
        test_images=test,
        test_labels=np.array([2, 4, 0], dtype=np.int32),  # class 4 appears only in the test split
        sources=np.array(["camera:a.jpg", "camera:b.jpg"]),  # '<U..' strings: ignored, not refused
        licenses=np.array(["CC0", "CC-BY"]),
    )
    train_part, test_part = npz_split(path, "train"), npz_split(path, "test")
    assert train_part.images.shape == (4, 3, 2, 2) and test_part.images.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(train_part.images.numpy(), train.transpose(0, 3, 1, 2))
    assert test_part.images.unique().tolist() == [200]
    assert train_part.labels is not None and train_part.labels.tolist() == [0, 1, 1, 0]
    assert test_part.labels is not None and test_part.labels.tolist() == [2, 4, 0]
    assert train_part.num_classes == test_part.num_classes == 5 and train_part.name == "set"


def test_keras_names_without_labels(tmp_path: Path) -> None:
    path = write(tmp_path, x_train=np.zeros((5, 3, 3)), x_test=np.ones((2, 3, 3), dtype=np.float32))
    train_part, test_part = npz_split(path, "train"), npz_split(path, "test")
    assert train_part.images.shape == (5, 1, 3, 3) and train_part.images.max() == 0
    assert test_part.images.shape == (2, 1, 3, 3) and test_part.images.min() == 255
    assert train_part.labels is None and test_part.labels is None and test_part.num_classes is None
    (tmp_path / "labelled").mkdir()
    with_labels = write(
        tmp_path / "labelled",
        x_train=np.zeros((2, 3, 3), np.uint8),
        y_train=np.array([0, 3]),
        x_test=np.zeros((1, 3, 3), np.uint8),
        y_test=np.array([1]),
    )
    assert npz_split(with_labels, "test").num_classes == 4


def test_split_cache_entries_are_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        train_images=np.zeros((4, 2, 2), np.uint8),
        test_images=np.full((2, 2, 2), 9, np.uint8),
    )
    first = {split: npz_split(path, split) for split in ("train", "test")}

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(vaelab.data.npz, "_decode_split", no_decoding)
    for split in ("train", "test"):
        assert torch.equal(npz_split(path, split).images, first[split].images)
    assert len(first["train"]) == 4 and len(first["test"]) == 2


def test_single_images_file_keeps_the_fixed_holdout(tmp_path: Path) -> None:
    path = write(tmp_path, images=np.zeros((60, 2, 2), np.uint8), labels=np.arange(60))
    assert len(npz_split(path, "train")) == 50 and len(npz_split(path, "test")) == 10


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "train_images": np.zeros((2, 4, 4), np.uint8)},
            "mixes images with the split keys train_images",
        ),
        ({"train_images": np.zeros((2, 4, 4), np.uint8)}, "has no 'test_images'.*it holds: train_images"),
        ({"x_test": np.zeros((2, 4, 4), np.uint8)}, "has no 'x_train'"),
        (
            {
                "x_train": np.zeros((2, 4, 4), np.uint8),
                "x_test": np.zeros((1, 4, 4), np.uint8),
                "y_train": np.zeros(2, np.int64),
            },
            "has no 'y_test'.*labels for both splits or for neither",
        ),
        (
            {"train_images": np.zeros((2, 4, 4), np.uint8), "x_test": np.zeros((1, 4, 4), np.uint8)},
            "two naming schemes",
        ),
        (
            {
                "train_images": np.zeros((2, 4, 4), np.uint8),
                "test_images": np.zeros((1, 4, 4), np.uint8),
                "train_labels": np.zeros(2, np.int64),
                "test_labels": np.zeros(3, np.int64),
            },
            r"'test_labels' has shape \(3,\); expected \(1,\)",
        ),
        (
            {"train_images": np.zeros((2, 4, 4), np.uint8), "test_images": np.zeros((1, 4, 5), np.uint8)},
            "'train_images' has shape .* but 'test_images' has",
        ),
        (
            {"train_images": np.zeros((2, 4, 4), np.uint8), "test_images": np.zeros((1, 3, 4, 4), np.uint8)},
            "'test_images' has shape.*channels-first",
        ),
    ],
)
def test_bad_split_npz_raises_clear_error(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = write(tmp_path, **arrays)
    splits: tuple[Split, ...] = ("train", "test")
    for split in splits:  # both splits are checked whichever is asked for
        with pytest.raises(DataError, match=match) as info:
            npz_split(path, split)
        assert str(path) in str(info.value)


@pytest.mark.skipif(not PHOTOS32.is_file(), reason="shared photos32 dataset not present")
def test_photos32_uses_its_own_split() -> None:
    train_part, test_part = npz_split(PHOTOS32, "train"), npz_split(PHOTOS32, "test")
    assert train_part.images.shape == (10000, 3, 32, 32) and test_part.images.shape == (1500, 3, 32, 32)
    assert train_part.labels is not None and test_part.labels is not None
    assert train_part.num_classes == test_part.num_classes
    assert train_part.num_classes == max(train_part.labels.max(), test_part.labels.max()) + 1
