"""Small synthetic image sets, made on the spot: for tests, examples and benchmarks that must not
depend on downloads."""

from __future__ import annotations

import numpy as np


def quadrant_squares(n: int = 240, side: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, side, side): a bright square in one of four quadrants on dim noise.

    The quadrant is the label (0..3, int64), so the set has four clear classes a tiny VAE learns in
    a few epochs.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = (rng.random((n, side, side)) * 40).astype(np.uint8)
    half = side // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, r * half : (r + 1) * half, c * half : (c + 1) * half] = 230
    return images, labels.astype(np.int64)


def colour_shapes(n: int = 512, side: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` uint8 RGB images (n, side, side, 3): one coloured disc or square on a coloured background.

    Background colour, shape colour, shape kind, position and size are drawn at random, so an
    image is told apart from the mean image only by its colours and layout: a model that collapses
    onto the mean image (every reconstruction the same blur) scores a low PSNR on it, one that encodes
    colour and position scores high. Small enough for a few hundred CPU steps in a test.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    images = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        background, colour = rng.integers(0, 256, size=(2, 3))
        while np.abs(background.astype(int) - colour).sum() < 150:  # the shape must stand out
            colour = rng.integers(0, 256, size=3)
        radius = rng.uniform(0.15, 0.3) * side
        cy, cx = rng.uniform(radius, side - radius, size=2)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        else:
            inside = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        images[i] = np.where(inside[..., None], colour, background).astype(np.uint8)
    return images
