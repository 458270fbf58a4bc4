"""A procedural dSprites-like dataset: 64x64 binary sprites whose generative factors are known exactly.

dSprites (Matthey et al. 2017) is the standard test bed for disentanglement: every combination of
shape x scale x orientation x x-position x y-position appears exactly once, so a metric such as the
Mutual Information Gap can ask how well each latent dimension captures each factor. The original file
is 737,280 images (3 x 6 x 40 x 32 x 32); vaelab draws the same kind of images itself, on demand, on a
configurable (by default coarser) grid, and caches them as one ``.npz`` file (uint8 images, int64
factor indices, no pickle) under the cache directory.

Images are stored in row-major order of the grid (shape slowest, y-position fastest); ``factors`` holds
each image's index along every factor, ``labels`` the shape (so the set also has 3 classes).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.dataset import ImageDataset
from vaelab.data.files import cache_dir
from vaelab.io.atomic import atomic_save

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SIDE = 64
RENDER_VERSION = 2
_BASE_RADIUS = 0.16  # half-size of a scale-1 sprite, as a fraction of the image side


@dataclass(frozen=True)
class DSpritesGrid:
    """How many values each factor takes. Scales span [0.5, 1], orientations [0, 2 pi) (endpoint
    excluded), positions [0.22, 0.78] of the image side (so a rotated sprite never leaves the image)."""

    shapes: int = 3
    scales: int = 6
    orientations: int = 8
    positions_x: int = 16
    positions_y: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.shapes <= len(SHAPES):
            raise ValueError(f"shapes must be 1 to {len(SHAPES)}; got {self.shapes}")
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1; got {value}")

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.shapes, self.scales, self.orientations, self.positions_x, self.positions_y)

    def values(self) -> list[np.ndarray]:
        """The value of each factor at each of its indices (shape: its index)."""
        return [
            np.arange(self.shapes, dtype=np.float64),
            np.linspace(0.5, 1.0, self.scales) if self.scales > 1 else np.array([1.0]),
            np.arange(self.orientations) * (2 * math.pi / self.orientations),
            np.linspace(0.22, 0.78, self.positions_x) if self.positions_x > 1 else np.array([0.5]),
            np.linspace(0.22, 0.78, self.positions_y) if self.positions_y > 1 else np.array([0.5]),
        ]


DEFAULT_GRID = DSpritesGrid()


def factor_table(grid: DSpritesGrid) -> np.ndarray:
    """(N, 5) int64: every combination of factor indices once, row-major (shape slowest)."""
    mesh = np.meshgrid(*[np.arange(s) for s in grid.sizes], indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.int64)


def render(grid: DSpritesGrid, factors: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """uint8 (N, 1, 64, 64) images (0 or 255) of the sprites at ``factors`` (N, 5) indices into ``grid``."""
    values = grid.values()
    centres = (np.arange(SIDE) + 0.5) / SIDE
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    out = np.zeros((len(factors), 1, SIDE, SIDE), np.uint8)
    for start in range(0, len(factors), chunk):
        f = factors[start : start + chunk]
        scale = values[1][f[:, 1]][:, None, None]
        theta = values[2][f[:, 2]][:, None, None]
        dx = xs[None] - values[3][f[:, 3]][:, None, None]
        dy = ys[None] - values[4][f[:, 4]][:, None, None]
        r = _BASE_RADIUS * scale
        u = (np.cos(theta) * dx + np.sin(theta) * dy) / r  # sprite frame: rotate by -theta, unit size
        v = (-np.sin(theta) * dx + np.cos(theta) * dy) / r
        shape = f[:, 0][:, None, None]
        square = np.maximum(np.abs(u), np.abs(v)) <= 0.8
        ellipse = u**2 + (v / 0.5) ** 2 <= 1.0
        hx, hy = u * 1.1, -v * 1.1 + 0.1  # the implicit heart (x^2 + y^2 - 1)^3 <= x^2 y^3
        heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
        mask = np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))
        out[start : start + chunk, 0] = mask.astype(np.uint8) * 255
    return out


def _cache_path(grid: DSpritesGrid) -> Path:
    key = json.dumps({"v": RENDER_VERSION, "grid": asdict(grid)}, sort_keys=True)
    return cache_dir() / f"dsprites-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def make_dsprites(grid: DSpritesGrid = DEFAULT_GRID, cache: bool = True) -> ImageDataset:
    """The whole dSprites-like set for ``grid``: rendered once, then read from its cached ``.npz``."""
    path = _cache_path(grid)
    factors = images = None
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                images, factors = f["images"], f["factors"]
            if images.shape != (int(np.prod(grid.sizes)), 1, SIDE, SIDE) or images.dtype != np.uint8:
                raise ValueError(f"holds {images.dtype} {images.shape}")
        except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
            warnings.warn(f"dSprites cache {path} is unreadable ({exc}); rendering again", stacklevel=2)
            images = None
    if images is None or factors is None:
        factors = factor_table(grid)
        images = render(grid, factors)
        if cache:
            try:
                atomic_save(path, lambda handle: np.savez_compressed(handle, images=images, factors=factors))
            except OSError as exc:
                warnings.warn(f"could not cache dSprites at {path} ({exc})", stacklevel=2)
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(np.ascontiguousarray(factors[:, 0])),
        name="dsprites",
        num_classes=grid.shapes,
        class_names=SHAPES[: grid.shapes],
        factors=torch.from_numpy(np.ascontiguousarray(factors)),
        factor_names=FACTOR_NAMES,
        factor_sizes=grid.sizes,
    )


def load_dsprites(cfg: object, progress: bool = False) -> ImageDataset:
    """The registered ``dsprites`` dataset: the default grid (3 shapes x 6 scales x 8 orientations x
    16 x 16 positions = 36,864 images of 64x64)."""
    return make_dsprites(DEFAULT_GRID)
