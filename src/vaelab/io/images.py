"""Image grids and conversions between tensors and the uint8 arrays other tools read."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.io.atomic import atomic_write


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] rounded to the 8-bit levels an image file holds (clamped first), any layout;
    uint8 input is returned as it is. The inverse of ``vaelab.data.to_float``."""
    if images.dtype == torch.uint8:
        return images
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] (or uint8) -> uint8 (N, H, W, C), the layout of ``.npz`` outputs."""
    return to_uint8(images).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 255
) -> np.ndarray:
    """Tile (N, C, H, W) images into one uint8 (H', W', C) array, ``nrow`` images per row."""
    arr = to_uint8_nhwc(images)
    n, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None
) -> Path:
    """Write a PNG grid of images (atomically). Small images are upscaled so the grid is easy to see."""
    grid = make_grid(images, nrow=nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale is None:
        scale = max(1, 256 // max(grid.shape[:2])) if max(grid.shape[:2]) < 256 else 1
        scale = min(scale, 4)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        img.save(f, format="PNG")
    return path


def interleave_rows(top: torch.Tensor, bottom: torch.Tensor, per_row: int) -> tuple[torch.Tensor, int]:
    """Arrange inputs and reconstructions as alternating rows of ``per_row`` images, for a comparison grid."""
    blocks = []
    for start in range(0, top.shape[0], per_row):
        blocks += [top[start : start + per_row], bottom[start : start + per_row]]
    return torch.cat(blocks), per_row


def save_gif(
    frames: list[torch.Tensor], path: str | Path, nrow: int | None = None, duration_ms: int = 120
) -> Path:
    """Write an animated GIF (looping, Pillow) whose frames are grids of (N, C, H, W) images."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    pictures = []
    for frame in frames:
        grid = make_grid(frame, nrow=nrow)
        img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
        scale = min(4, max(1, 256 // max(grid.shape[:2])))
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        pictures.append(img)
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pictures[0].save(
            f, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0
        )
    return path
