"""The npz loader: accepted layouts and one clear error per kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaelab.data import DataConfig, DataError
from vaelab.data.npz import load_npz


def load(path: Path):
    return load_npz(DataConfig(name="npz", path=str(path)), progress=False)


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
        ({"pixels": np.zeros((2, 4, 4), np.uint8)}, "no 'images' array.*pixels"),
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
