"""``folder``: any directory of images, decoded once into a uint8 tensor.

Images are found recursively by extension (hidden files and folders, names starting with '.', are
ignored: they are OS metadata such as macOS ``._x.png`` forks). If the root's sub-folders hold the
images, each sub-folder is a class (sorted names -> labels 0..K-1); if the images sit directly in
the root, they are unlabelled. Each image (the first frame of an animation) is EXIF-rotated, brought
to 8 bits, composited onto white where it has transparency, converted to ``channels``, and its
centred square crop is resized to ``image_size`` with Pillow's antialiased bicubic filter, which
averages over the source area when shrinking. By image mode:

- 16-bit greyscale ("I;16", and "I" holding 0..65535) keeps the high byte (value >> 8), as Pillow
  itself does for 16-bit colour PNGs; clipping at 255 would turn most such images white. A 32-bit
  "I" value outside 0..65535, or a float ("F") pixel outside [0, 1], fails the file rather than clip.
- RGBA, LA, PA and palette or greyscale/RGB images with a transparent colour are composited onto a
  white background (a transparent pixel becomes white, half-transparent red becomes pink).
- Greyscale -> RGB replicates the channel; RGB -> greyscale is Pillow's ITU-R 601 luma
  (L = 0.299 R + 0.587 G + 0.114 B); palette images take their palette colours; 1-bit is 0 / 255;
  CMYK -> RGB is Pillow's R = (255 - C)(255 - K) / 255 (and likewise G, B). Embedded colour
  profiles are not applied.

An image that cannot be decoded (corrupt, truncated, not an image, out-of-range pixels) is never
skipped silently: ``on_error="raise"`` stops with one DataError naming every such file, ``"skip"``
warns naming every skipped file and goes on with the rest.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from vaelab.data.cache import Decoded, cached_decode
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_MAX_LISTED = 20  # bad files named in a DataError before "and N more"
# Part of the cache key: bump when decode_image's output changes for any file, so old entries go stale.
_DECODE_VERSION = 2


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, not hidden), as sorted paths relative to ``root``."""

    def unreadable(error: OSError) -> None:
        # os.walk skips folders it cannot list unless told otherwise: that would be a silent skip.
        raise DataError(f"Cannot list folder {error.filename} ({error.strerror}). Fix its permissions.")

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        base = Path(dirpath).relative_to(root)
        found.extend(
            base / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(found, key=lambda path: path.as_posix())


def _class_names(root: Path, relpaths: list[Path]) -> list[str] | None:
    """Sorted class folder names, or None when every image sits directly in ``root``."""
    in_root = [path for path in relpaths if len(path.parts) == 1]
    if len(in_root) == len(relpaths):
        return None
    if in_root:
        raise DataError(
            f"{root} mixes images in the folder itself ({in_root[0]}, ...) with images in sub-folders. "
            f"Use either class sub-folders only (labelled) or images in the folder only (unlabelled)."
        )
    return sorted({path.parts[0] for path in relpaths})


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale as 8-bit "L" (or "LA" keeping a transparent value); others as given.

    Pillow's own ``convert("L")`` clips these modes at 255, so a 16-bit image would come out white and
    a float image in [0, 1] black.
    """
    if image.mode != "F" and not image.mode.startswith("I"):
        return image
    values = np.asarray(image)  # "I;16*": uint16, "I": int32, "F": float32
    if image.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            low, high = float(values.min()), float(values.max())
            raise ValueError(f"float ('F') pixels range over [{low:g}, {high:g}]; expected [0, 1]")
        grey = np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f"'{image.mode}' pixels range over [{values.min()}, {values.max()}]; expected 16-bit 0..65535"
            )
        grey = (values.astype(np.uint32) >> 8).astype(np.uint8)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        # The transparent value is a 16-bit one: match it before the reduction merges 256 values.
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1))
    return Image.fromarray(grey)


def decode_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image as uint8 (image_size, image_size, channels). Pillow's errors, and a ValueError for
    out-of-range 32-bit or float pixels, propagate so the caller can name the file."""
    with Image.open(path) as opened:
        image = _to_8bit(ImageOps.exif_transpose(opened))
        if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
            # Composite onto white, the usual page colour, so transparent regions do not keep arbitrary
            # hidden colours and a dark drawing on a transparent canvas stays visible.
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        return fit_image(image, image_size, channels)


def fit_image(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """An 8-bit image (transparency already composited) as uint8 (image_size, image_size, channels):
    converted to the channels, its centred square crop resized with antialiased bicubic filtering."""
    image = image.convert("L" if channels == 1 else "RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    if (width, height) != (image_size, image_size):
        # Resizing the centred square equals "shorter side to image_size, then centre crop".
        image = image.resize(
            (image_size, image_size),
            Image.Resampling.BICUBIC,
            box=(left, top, left + side, top + side),
            reducing_gap=3.0,
        )
    return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, channels)


def _decode_all(
    root: Path, relpaths: list[Path], cfg: DataConfig, progress: bool
) -> tuple[np.ndarray, list[Path], list[str]]:
    """Decode every file in parallel: (N, C, S, S) of the readable ones, their paths, 'path: why's."""
    size, channels = cfg.image_size, cfg.channels
    out = np.empty((len(relpaths), channels, size, size), dtype=np.uint8)
    ok = np.zeros(len(relpaths), dtype=bool)
    failures = []

    def work(i: int) -> str | None:
        try:
            out[i] = decode_image(root / relpaths[i], size, channels).transpose(2, 0, 1)
        except Exception as error:  # any decoder failure of one file is reported by name, below
            return f"{relpaths[i].as_posix()}: {type(error).__name__}: {error}"
        ok[i] = True
        return None

    # Pillow releases the GIL while decoding and resizing, so threads scale on large folders.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        results = pool.map(work, range(len(relpaths)))
        for failure in tqdm(results, total=len(relpaths), desc=f"decoding {root.name}", disable=not progress):
            if failure is not None:
                failures.append(failure)
    kept = [path for path, good in zip(relpaths, ok, strict=True) if good]
    return (out if ok.all() else out[ok]), kept, failures


def _decode_folder(root: Path, relpaths: list[Path], cfg: DataConfig, progress: bool) -> Decoded:
    class_names = _class_names(root, relpaths)
    images, kept, failures = _decode_all(root, relpaths, cfg, progress)
    if failures and cfg.on_error == "raise":
        listed = "\n  ".join(failures[:_MAX_LISTED])
        more = f"\n  ... and {len(failures) - _MAX_LISTED} more" if len(failures) > _MAX_LISTED else ""
        raise DataError(
            f"{len(failures)} image(s) in {root} could not be read:\n  {listed}{more}\n"
            f"Fix or remove them, or set data.on_error: skip to train without them."
        )
    if len(images) == 0:
        raise DataError(f"None of the {len(relpaths)} image(s) in {root} could be read; first: {failures[0]}")
    labels = None
    if class_names is not None:
        index = {name: label for label, name in enumerate(class_names)}
        labels = np.array([index[path.parts[0]] for path in kept], dtype=np.int64)
    meta = {
        "num_classes": None if class_names is None else len(class_names),
        "class_names": class_names,
        "skipped": failures,
    }
    return Decoded(images, labels, meta)


def _size_mtime(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file; (-1, -1) if it cannot be stat-ed (decoding then names it)."""
    try:
        stat = path.stat()
    except OSError:  # e.g. a broken symlink
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


def load_folder(cfg: DataConfig, progress: bool) -> ImageDataset:
    """Every image under ``cfg.path`` (the registry holds out a fixed test part; see ``registry.py``)."""
    if cfg.path is None:
        raise DataError("data.name is 'folder' but data.path is not set: set it to a folder of images.")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path {root} is not a folder. Set data.path to a folder of images.")
    relpaths = find_images(root)
    if not relpaths:
        raise DataError(
            f"No images found under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, recursively)."
        )
    # Any change of a file's content, the file list or the decode settings changes the key.
    identity = {
        "root": str(root.resolve()),
        "files": [[path.as_posix(), *_size_mtime(root / path)] for path in relpaths],
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "on_error": cfg.on_error,
        "decoder": _DECODE_VERSION,
    }
    decoded = cached_decode("folder", identity, lambda: _decode_folder(root, relpaths, cfg, progress))
    if decoded.meta["skipped"]:
        skipped = decoded.meta["skipped"]
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image(s) in {root} (data.on_error: skip):\n  "
            + "\n  ".join(skipped),
            stacklevel=2,
        )
    return decoded.to_dataset(root.name)
