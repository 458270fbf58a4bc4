"""Out-of-distribution image sets made offline, for any model's image shape: what ``vaelab score`` and
``vaelab evaluate --ood`` test a model against.

Every set is rendered at the shape asked for (channels x side x side), so one name serves the MNIST
models (1 x 28 x 28) and the photos32 models (3 x 32 x 32) alike. Each is deterministic: the same name,
shape, count and seed give the same uint8 images on every machine with the same fonts and Pillow.

- ``letters``: A-Z and a-z drawn from TrueType fonts found on this machine (DejaVu, Liberation), else
  Pillow's own bundled font, with a random pen width and a slight rotation, and placed as MNIST places
  a digit (fitted into 20/28 of the side, centre of mass at the centre): the hard near-OOD set. Its
  labels say which letter each image is (``class_names``), so a report can name the letters that pass
  for digits.
- ``dsprites``: the procedural sprites of ``dsprites.py`` (squares, ellipses, hearts), resized.
- ``mnist`` / ``mnist-inverted``: MNIST's test digits (``mnist`` files under the data root), resized;
  inverted is 255 - x, dark ink on white.
- ``photos``: photos32's test patches (``photos32/photos32.npz`` under the data root), in grey
  (ITU-R 601 luma) for one-channel models, resized with Pillow's antialiased bicubic filter.
- ``uniform-noise``: every pixel uniform over 0..255. ``gaussian-noise``: N(127.5, 64^2) per pixel,
  clipped and rounded. ``constant``: one random level per image (per channel for colour).

For three channels, the one-channel sets are tinted: a grey level g becomes bg + g (fg - bg) with a
random bright foreground colour and a random dark background colour per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError
from vaelab.data.files import data_root

Shape = tuple[int, int, int]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# TrueType fonts tried for ``letters``, in this order; those present are all used.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)
PHOTOS_FILE = Path("photos32") / "photos32.npz"


@dataclass(frozen=True)
class OODSet:
    """A named OOD set: ``make(shape, n, rng, data_dir)`` gives uint8 (n, C, H, W), and for a set made of
    ``classes`` also each image's class index (n,)."""

    name: str
    description: str
    make: Callable[[Shape, int, np.random.Generator, str | None], Any]
    classes: tuple[str, ...] | None = None


def _resize(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, H, W) -> (N, side, side) with Pillow's antialiased bicubic filter (as folder.py)."""
    if images.shape[1:] == (side, side):
        return images
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((side, side), Image.Resampling.BICUBIC)) for im in images]
    )


def _channels(grey: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, S, S) -> (N, C, S, S): as it is for one channel, tinted for three (see module doc)."""
    if channels == 1:
        return grey[:, None]
    n = len(grey)
    fg = rng.uniform(0.55, 1.0, size=(n, 3, 1, 1)) * 255
    bg = rng.uniform(0.0, 0.25, size=(n, 3, 1, 1)) * 255
    g = grey[:, None].astype(np.float64) / 255
    return np.rint(bg + g * (fg - bg)).clip(0, 255).astype(np.uint8)


def letter_fonts() -> list[str]:
    """The TrueType fonts ``letters`` draws with here (empty: Pillow's bundled default font)."""
    return [path for path in FONT_CANDIDATES if Path(path).is_file()]


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def _mnist_place(glyph: np.ndarray, side: int) -> np.ndarray:
    """A glyph (white on black, any size) placed as MNIST places digits: its bounding box scaled to fit
    20/28 of ``side`` keeping the aspect ratio, then shifted so its centre of mass is the image centre."""
    ys, xs = np.nonzero(glyph > 0)
    crop = glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    box = side * 20 / 28
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    out = np.zeros((side, side))
    mass = small.sum() or 1.0
    cy = (small.sum(1) * np.arange(h)).sum() / mass
    cx = (small.sum(0) * np.arange(w)).sum() / mass
    top = int(np.clip(round(side / 2 - 0.5 - cy), 0, side - h))
    left = int(np.clip(round(side / 2 - 0.5 - cx), 0, side - w))
    out[top : top + h, left : left + w] = small
    return out.clip(0, 255).round().astype(np.uint8)


def letters(
    shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    channels, side, _ = shape
    fonts: list[str | None] = [*letter_fonts()] or [None]
    grey = np.empty((n, side, side), np.uint8)
    which = np.empty(n, np.int64)
    canvas = 128
    for i in range(n):
        font = _font(fonts[int(rng.integers(len(fonts)))], 80)
        which[i] = int(rng.integers(len(LETTERS)))
        letter = LETTERS[which[i]]
        image = Image.new("L", (canvas, canvas), 0)
        ImageDraw.Draw(image).text(
            (canvas / 2, canvas / 2),
            letter,
            fill=255,
            font=font,
            anchor="mm",
            stroke_width=int(rng.integers(0, 6)),
            stroke_fill=255,
        )
        image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        grey[i] = _mnist_place(np.asarray(image), side)
    return _channels(grey, channels, rng), which


def dsprites(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    from vaelab.data.dsprites import DEFAULT_GRID, factor_table, render

    table = factor_table(DEFAULT_GRID)
    picked = table[rng.choice(len(table), size=n, replace=n > len(table))]
    grey = _resize(render(DEFAULT_GRID, picked)[:, 0], shape[1])
    return _channels(grey, shape[0], rng)


def _mnist_test(data_dir: str | None) -> np.ndarray:
    from vaelab.data import DataConfig, load_dataset

    cfg = DataConfig(name="mnist", data_dir=data_dir, download=False)
    return load_dataset(cfg, "test", progress=False).images[:, 0].numpy()


def _pick(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return images[rng.choice(len(images), size=n, replace=n > len(images))]


def mnist(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    grey = _resize(_pick(_mnist_test(data_dir), n, rng), shape[1])
    return _channels(grey, shape[0], rng)


def mnist_inverted(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    grey = 255 - _resize(_pick(_mnist_test(data_dir), n, rng), shape[1])
    return _channels(grey, shape[0], rng)


def photos_path(data_dir: str | None) -> Path:
    """Where the ``photos`` set reads photos32: ``<data root>/photos32/photos32.npz``."""
    return data_root(data_dir) / PHOTOS_FILE


def photos(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    path = photos_path(data_dir)
    if not path.is_file():
        raise DataError(
            f"the 'photos' OOD set reads {path}, which does not exist: point --data-dir or $VAELAB_DATA "
            "at a folder holding photos32/photos32.npz"
        )
    with np.load(path, allow_pickle=False) as arrays:
        rgb = _pick(arrays["test_images"], n, rng)  # (n, 32, 32, 3)
    channels, side, _ = shape
    mode = "L" if channels == 1 else "RGB"
    out = [
        np.asarray(Image.fromarray(im).convert(mode).resize((side, side), Image.Resampling.BICUBIC))
        for im in rgb
    ]
    stacked = np.stack(out)
    return stacked[:, None] if channels == 1 else np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))


def uniform_noise(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def gaussian_noise(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    return np.rint(rng.normal(127.5, 64.0, size=(n, *shape))).clip(0, 255).astype(np.uint8)


def constant(shape: Shape, n: int, rng: np.random.Generator, data_dir: str | None) -> np.ndarray:
    levels = rng.integers(0, 256, size=(n, shape[0], 1, 1), dtype=np.uint8)
    return np.ascontiguousarray(np.broadcast_to(levels, (n, *shape)))


OOD_SETS: dict[str, OODSet] = {
    s.name: s
    for s in (
        OODSet(
            "letters",
            "letters A-Z, a-z drawn from TrueType fonts, placed like MNIST digits",
            letters,
            tuple(LETTERS),
        ),
        OODSet("dsprites", "procedural dSprites shapes (square, ellipse, heart), resized", dsprites),
        OODSet("mnist", "MNIST test digits, resized (tinted for colour models)", mnist),
        OODSet("mnist-inverted", "MNIST test digits inverted (255 - x)", mnist_inverted),
        OODSet("photos", "photos32 test patches (grey for one-channel models), resized", photos),
        OODSet("uniform-noise", "uniform noise over 0..255 per pixel", uniform_noise),
        OODSet("gaussian-noise", "N(127.5, 64^2) noise per pixel, clipped", gaussian_noise),
        OODSet("constant", "one random level per image (per channel for colour)", constant),
    )
}


def make_ood_set(
    name: str, shape: Shape, n: int = 2000, seed: int = 0, data_dir: str | None = None
) -> ImageDataset:
    """``n`` images of the OOD set ``name`` at ``shape`` (C, H, W; C 1 or 3, H = W), drawn with ``seed``.

    A DataError names the sets there are, or the file a set needs and lacks."""
    if name not in OOD_SETS:
        raise DataError(f"unknown OOD set {name!r}; known: {', '.join(OOD_SETS)}")
    channels, height, width = shape
    if channels not in (1, 3) or height != width:
        raise DataError(f"OOD sets are made for square images of 1 or 3 channels; got shape {shape}")
    seq = np.random.SeedSequence([seed, *name.encode()])
    made = OOD_SETS[name].make(tuple(shape), n, np.random.default_rng(seq), data_dir)
    classes = OOD_SETS[name].classes
    images, labels = made if classes is not None else (made, None)
    assert images.shape == (n, *shape) and images.dtype == np.uint8, (name, images.shape, images.dtype)
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        None if labels is None else torch.from_numpy(labels),
        f"ood:{name}",
        None if classes is None else len(classes),
        classes,
    )


def default_pairs(shape: Shape) -> list[str]:
    """The OOD sets a model of ``shape`` is benchmarked against: every set except the model's own kind
    (MNIST for one-channel models; photos for colour ones)."""
    own = "mnist" if shape[0] == 1 else "photos"
    return [name for name in OOD_SETS if name != own]


__all__ = ["OOD_SETS", "OODSet", "default_pairs", "letter_fonts", "make_ood_set", "photos_path"]
