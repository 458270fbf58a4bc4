"""The folder loader: classes from sub-folders, channels, resizing, unreadable files by name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.data import DataConfig, DataError
from vaelab.data.folder import decode_image, load_folder


def save(
    path: Path, size: tuple[int, int] = (20, 12), color: tuple[int, ...] = (200, 30, 10), mode: str = "RGB"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def make_classes(root: Path) -> None:
    save(root / "cats" / "a.png")
    save(root / "cats" / "nested" / "b.JPG")
    save(root / "dogs" / "c.bmp", color=(10, 200, 10))
    save(root / "birds" / "d.webp", size=(9, 30))
    (root / "dogs" / "notes.txt").write_text("not an image")
    save(root / "dogs" / ".hidden.png")


def folder_cfg(root: Path, **kwargs: object) -> DataConfig:
    return DataConfig(name="folder", path=str(root), **kwargs)


def test_class_subfolders_give_sorted_labels(tmp_path: Path) -> None:
    make_classes(tmp_path)
    data = load_folder(folder_cfg(tmp_path, image_size=8, channels=3), progress=False)
    assert data.images.shape == (4, 3, 8, 8)
    assert data.num_classes == 3 and data.class_names == ("birds", "cats", "dogs")
    assert data.labels is not None and data.labels.tolist() == [
        0,
        1,
        1,
        2,
    ]  # birds/d, cats/a, cats/nested/b, dogs/c
    assert data.name == tmp_path.name
    assert data.images[3, :, 4, 4].tolist() == [10, 200, 10]


def test_grayscale_and_unlabelled_root(tmp_path: Path) -> None:
    save(tmp_path / "x.png", color=(255, 255, 255))
    save(tmp_path / "y.png", color=(0, 0, 0))
    data = load_folder(folder_cfg(tmp_path, image_size=16, channels=1), progress=False)
    assert data.images.shape == (2, 1, 16, 16) and data.labels is None and data.num_classes is None
    assert data.images[0].min() == 255 and data.images[1].max() == 0


def test_resize_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    # 30 wide x 10 high: left third black, middle third white, right third black.
    pixels = np.zeros((10, 30), dtype=np.uint8)
    pixels[:, 10:20] = 255
    Image.fromarray(pixels).save(tmp_path / "bar.png")
    image = decode_image(tmp_path / "bar.png", image_size=5, channels=1)
    # Only the centre square survives; bicubic support reaches just past its edges, hence > 200.
    assert image.shape == (5, 5, 1) and image[:, 1:4].min() == 255 and image.min() > 200
    tall = decode_image(save(tmp_path / "tall.png", size=(4, 40), color=(9, 9, 9)), image_size=8, channels=3)
    assert tall.shape == (8, 8, 3) and (tall == 9).all()


def test_transparent_pixels_become_black(tmp_path: Path) -> None:
    path = save(tmp_path / "t.png", size=(4, 4), color=(255, 255, 255, 0), mode="RGBA")
    assert decode_image(path, 4, 1).max() == 0


def test_broken_image_raises_naming_the_file(tmp_path: Path) -> None:
    make_classes(tmp_path)
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "dogs" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError) as info:
        load_folder(folder_cfg(tmp_path), progress=False)
    message = str(info.value)
    assert "cats/broken.png" in message and "dogs/dangling.png" in message and "on_error: skip" in message


def test_broken_image_skipped_with_warning_naming_it(tmp_path: Path) -> None:
    make_classes(tmp_path)
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save(tmp_path / "dogs" / "truncated.jpg").write_bytes((tmp_path / "cats" / "a.png").read_bytes()[:30])
    cfg = folder_cfg(tmp_path, on_error="skip")
    for _ in range(2):  # the second load comes from the cache and must warn again
        with pytest.warns(UserWarning) as record:
            data = load_folder(cfg, progress=False)
        message = " ".join(str(w.message) for w in record)
        assert "cats/broken.png" in message and "dogs/truncated.jpg" in message
        assert len(data) == 4 and data.labels is not None and data.labels.tolist() == [0, 1, 1, 2]


def test_folder_problems_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No images found"):
        load_folder(folder_cfg(tmp_path), progress=False)
    with pytest.raises(DataError, match="not a folder"):
        load_folder(folder_cfg(tmp_path / "absent"), progress=False)
    with pytest.raises(DataError, match="path is not set"):
        load_folder(DataConfig(name="folder"), progress=False)
    save(tmp_path / "root.png")
    save(tmp_path / "cls" / "a.png")
    with pytest.raises(DataError, match="mixes images"):
        load_folder(folder_cfg(tmp_path), progress=False)
    (tmp_path / "root.png").unlink()
    (tmp_path / "cls" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="None of the 1"):
        load_folder(folder_cfg(tmp_path, on_error="skip"), progress=False)


def test_changed_file_invalidates_the_cache(tmp_path: Path) -> None:
    path = save(tmp_path / "a.png", color=(0, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_folder(folder_cfg(tmp_path), progress=False).images.max() == 0
    save(path, size=(21, 12), color=(255, 255, 255))
    assert load_folder(folder_cfg(tmp_path), progress=False).images.min() == 255
