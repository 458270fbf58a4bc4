"""The folder loader: sub-folder classes, each image mode's pixels, resizing, unreadable files by name."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.data import DataConfig, DataError
from vaelab.data.folder import decode_image, load_folder


def save(
    path: Path,
    size: tuple[int, int] = (20, 12),
    color: int | tuple[int, ...] = (200, 30, 10),
    mode: str = "RGB",
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


def png16(path: Path, pixels: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): colour type 0 grey, 2 RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def palette_image() -> Image.Image:
    """2x2 palette image: indices 0 1 / 1 2 with colours black, (10, 20, 30), (200, 100, 50)."""
    image = Image.fromarray(np.array([[0, 1], [1, 2]], dtype=np.uint8), mode="P")
    image.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50])
    return image


def decoded(path: Path, channels: int) -> list:
    """The 2x2 image at ``path`` as nested lists: [row][column] -> [value per channel]."""
    return decode_image(path, 2, channels).tolist()


WHITE, BLACK = [255, 255, 255], [0, 0, 0]


def test_transparency_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255]], [[255, 0, 0, 128], [0, 0, 255, 255]]], np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    # Half-transparent red over white: 255 * 128/255 + 255 * 127/255 = 255 red, 127 green and blue.
    assert decoded(path, 3) == [[WHITE, [255, 0, 0]], [[255, 127, 127], [0, 0, 255]]]
    assert decoded(path, 1) == [[[255], [76]], [[165], [29]]]  # 601 luma of the composited colours
    grey_alpha = tmp_path / "la.png"
    Image.fromarray(np.array([[[50, 0], [50, 255]]] * 2, np.uint8), mode="LA").save(grey_alpha)
    assert decoded(grey_alpha, 1) == [[[255], [50]]] * 2
    assert decoded(grey_alpha, 3) == [[WHITE, [50, 50, 50]]] * 2
    palette = tmp_path / "p.png"
    palette_image().save(palette, transparency=1)
    assert decoded(palette, 3) == [[BLACK, WHITE], [WHITE, [200, 100, 50]]]
    gif = tmp_path / "p.gif"
    palette_image().save(gif, transparency=1)
    assert decoded(gif, 3) == [[BLACK, WHITE], [WHITE, [200, 100, 50]]]


def test_palette_greyscale_and_one_bit(tmp_path: Path) -> None:
    palette = tmp_path / "p.png"
    palette_image().save(palette)
    assert decoded(palette, 3) == [[BLACK, [10, 20, 30]], [[10, 20, 30], [200, 100, 50]]]
    assert decoded(palette, 1) == [[[0], [18]], [[18], [124]]]
    grey = save(tmp_path / "l.png", size=(2, 2), color=100, mode="L")
    assert decoded(grey, 3) == [[[100, 100, 100]] * 2] * 2 and decoded(grey, 1) == [[[100]] * 2] * 2
    one_bit = tmp_path / "one.png"
    Image.fromarray(np.array([[True, False], [False, True]])).save(one_bit)
    assert decoded(one_bit, 1) == [[[255], [0]], [[0], [255]]]
    assert decoded(one_bit, 3) == [[WHITE, BLACK], [BLACK, WHITE]]
    rgb = save(tmp_path / "rgb.png", size=(2, 2), color=(200, 30, 10))
    assert decoded(rgb, 1) == [[[79]] * 2] * 2  # 0.299 * 200 + 0.587 * 30 + 0.114 * 10 = 78.55


def test_sixteen_bit_keeps_the_high_byte(tmp_path: Path) -> None:
    values = np.array([[65535, 32896], [255, 256]], dtype=np.uint16)
    grey = tmp_path / "grey16.png"
    Image.fromarray(values).save(grey)
    with Image.open(grey) as opened:
        assert opened.mode == "I;16"
    assert decoded(grey, 1) == [[[255], [128]], [[0], [1]]]
    assert decoded(grey, 3) == [[WHITE, [128, 128, 128]], [BLACK, [1, 1, 1]]]
    keyed = tmp_path / "keyed16.png"
    Image.fromarray(values).save(keyed, transparency=32896)  # only that exact 16-bit value is transparent
    assert decoded(keyed, 1) == [[[255], [255]], [[0], [1]]]
    wide = tmp_path / "grey32.tif"
    Image.fromarray(values.astype(np.int32)).save(wide)  # mode "I" holding 16-bit values
    assert decoded(wide, 1) == [[[255], [128]], [[0], [1]]]
    colour = png16(tmp_path / "rgb16.png", np.stack([values, values[::-1], np.zeros_like(values)], -1), 2)
    assert decoded(colour, 3) == [[[255, 0, 0], [128, 1, 0]], [[0, 255, 0], [1, 128, 0]]]
    floats = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.2]], dtype=np.float32)).save(floats)
    assert decoded(floats, 1) == [[[0], [128]], [[255], [51]]]


def test_jpeg_and_cmyk_jpeg(tmp_path: Path) -> None:
    # CMYK JPEGs hold CMYK samples (no YCbCr step), so a flat colour at quality 100 comes back exactly.
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (2, 2), (10, 200, 30, 100)).save(cmyk, quality=100)
    with Image.open(cmyk) as opened:
        assert opened.mode == "CMYK"
    # R = (255 - 10)(255 - 100) / 255 = 148.9, G = 55 * 155 / 255 = 33.4, B = 225 * 155 / 255 = 136.8
    assert decoded(cmyk, 3) == [[[149, 33, 137]] * 2] * 2 and decoded(cmyk, 1) == [[[80]] * 2] * 2
    # An RGB JPEG goes through YCbCr and back, which may move a channel by one.
    rgb = save(tmp_path / "rgb.jpg", size=(2, 2), color=(200, 30, 10))
    assert np.abs(decode_image(rgb, 2, 3).astype(int) - [200, 30, 10]).max() <= 1


def test_out_of_range_wide_pixels_fail_by_name(tmp_path: Path) -> None:
    save(tmp_path / "ok.png", size=(2, 2))
    Image.fromarray(np.array([[70000, 0]], dtype=np.int32)).save(tmp_path / "wide.tif")
    Image.fromarray(np.array([[1.5, 0.0]], dtype=np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(DataError) as info:
        load_folder(folder_cfg(tmp_path), progress=False)
    assert "wide.tif: ValueError" in str(info.value) and "expected 16-bit 0..65535" in str(info.value)
    assert "hdr.tif: ValueError" in str(info.value) and "expected [0, 1]" in str(info.value)


def test_truncated_jpeg_and_non_image_are_named(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.jpg")
    blob = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError) as info:
        load_folder(folder_cfg(tmp_path, image_size=8), progress=False)
    message = str(info.value)
    assert "2 image(s)" in message and "cut.jpg: OSError" in message and "truncated" in message
    assert "notes.png: UnidentifiedImageError" in message and "whole.jpg" not in message
    with pytest.warns(UserWarning, match=r"Skipped 2 unreadable image\(s\)") as record:
        data = load_folder(folder_cfg(tmp_path, image_size=8, on_error="skip"), progress=False)
    assert "cut.jpg" in str(record[0].message) and "notes.png" in str(record[0].message)
    assert len(data) == 1


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
