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
