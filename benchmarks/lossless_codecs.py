"""The floor a likelihood model must beat on photos32: bits/dim of off-the-shelf lossless codecs.

A VAE's test bits/dim is a code length, so it means something only next to what a plain lossless
codec achieves on the same pixels. This script compresses each 32x32 test patch on its own with
Pillow, as PNG (zlib level 9, optimised) and as lossless WebP (method 6, the slowest and smallest),
and also all patches tiled into one mosaic image, where the codec can share statistics across
patches as a model shares its weights. bits/dim = 8 x bytes / (N x 32 x 32 x 3); every file is
decoded again and checked to give the same pixels, so the figures are truly lossless. About 1.5
minutes on one core for the 1,500 test patches, nearly all of it in WebP's method 6.

    python benchmarks/lossless_codecs.py [--data photos32.npz] [--split test] [--out codecs.json]
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
from collections.abc import Callable

import numpy as np
import PIL
from _photos32 import data_path, emit, header
from PIL import Image, features

# Each codec's most compressing settings, as Pillow names them.
CODECS: dict[str, dict[str, object]] = {
    "png": {"format": "PNG", "optimize": True, "compress_level": 9},
    "webp_lossless": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
}


def encoded_size(image: np.ndarray, options: dict[str, object]) -> int:
    """Bytes of ``image`` (H, W, 3 uint8) encoded with ``options``; raises if decoding changes a pixel."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if not np.array_equal(decoded, image):
        raise RuntimeError(f"{options['format']} did not round-trip exactly: not lossless")
    return buffer.getbuffer().nbytes


def mosaic_grid(n: int) -> tuple[int, int]:
    """The most nearly square rows x columns with rows x columns = n (1500 -> 30 x 50)."""
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    return rows, n // rows


def tile(patches: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows x cols, h, w, c) patches laid out row by row as one (rows h, cols w, c) image."""
    _, h, w, c = patches.shape
    return patches.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def measure(patches: np.ndarray, size: Callable[[np.ndarray], int]) -> dict[str, float | int]:
    """Per-patch and mosaic bits/dim of one codec over (N, H, W, C) patches."""
    dims = patches[0].size
    sizes = [size(p) for p in patches]
    rows, cols = mosaic_grid(len(patches))
    mosaic_bytes = size(tile(patches, rows, cols))
    return {
        "per_patch_bits_per_dim": 8 * sum(sizes) / (len(patches) * dims),
        "per_patch_median_bits_per_dim": 8 * statistics.median(sizes) / dims,
        "per_patch_bytes_total": sum(sizes),
        "mosaic_bits_per_dim": 8 * mosaic_bytes / (len(patches) * dims),
        "mosaic_bytes": mosaic_bytes,
        "mosaic_grid": f"{rows}x{cols}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="photos32.npz (default: $VAELAB_DATA/photos32/, else ../shared/datasets/)")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    path = data_path(args.data)
    with np.load(path, allow_pickle=False) as data:
        patches = np.ascontiguousarray(data[f"{args.split}_images"])
    codecs = {
        name: measure(patches, lambda image, o=options: encoded_size(image, o))
        for name, options in CODECS.items()
    }
    report = {
        **header("lossless_codecs"),
        "data": {"path": str(path), "split": args.split, "patches": len(patches), "shape": patches.shape[1:]},
        "settings": {name: {k: v for k, v in o.items() if k != "format"} for name, o in CODECS.items()},
        "libraries": {
            "pillow": PIL.__version__,
            "libwebp": features.version("webp"),
            "zlib": features.version("zlib"),
        },
        "codecs": codecs,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
