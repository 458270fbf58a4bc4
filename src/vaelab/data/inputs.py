"""The images a command scores, from whatever the user names: a folder, one image file, an .npz, an IDX
file, a dataset name or an OOD set, each brought to the model's image shape and named one by one.

- A folder (recursive) or one image file: decoded as folder datasets are (``folder.py``: EXIF-rotated,
  transparency composited onto white, converted to the model's channels, the centred square crop
  resized with antialiased bicubic filtering). A file that cannot be decoded is skipped and listed in
  ``skipped`` (the caller reports it); the others are scored. Names: the path under the folder.
- ``.npz``: ``images``, else the file's test array (``test_images`` / ``x_test``), laid out as
  ``npz.py`` reads them. Names: ``file.npz[i]``.
- An IDX images file (MNIST's format, gzipped or not; magic 0x00000803). Names: ``file[i]``.
- A dataset name (``mnist``, ``fashion-mnist``, ``digits``, ``dsprites``): its ``split``. Names: ``name[i]``.
- ``ood:NAME`` (see ``ood_sets.py``): ``count`` images made for the shape; a bare NAME works too when
  it is no dataset name and no file (``dsprites`` is the dataset, ``ood:dsprites`` the OOD set).

An image of another size or channel count is converted and resized to the model's as above unless
``resize`` is off: then the first such image is refused with a DataError naming it.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.data.config import DataConfig, DatasetName
from vaelab.data.errors import DataError
from vaelab.data.folder import IMAGE_EXTENSIONS, _decode_all, find_images, fit_image

Shape = tuple[int, int, int]
IDX_UBYTE_3D = 0x00000803


@dataclass
class Inputs:
    """uint8 images (N, C, H, W) at the model's shape, one name each, and what could not be read."""

    images: torch.Tensor
    names: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)  # "name: why" of each unreadable file
    converted: int = 0  # how many were resized or changed channels
    labels: torch.Tensor | None = None  # a class index per image, for an OOD set made of classes
    class_names: tuple[str, ...] | None = None


def _refuse(name: str, found: tuple[int, ...], shape: Shape) -> DataError:
    c, h, w = shape
    return DataError(
        f"{name} is {found[2]}x{found[1]} with {found[0]} channel(s) but the model takes {w}x{h} with {c}: "
        "drop --no-resize to convert and resize it (centred square crop, bicubic)"
    )


def fit_array(images: np.ndarray, shape: Shape, resize: bool, names: list[str]) -> tuple[np.ndarray, int]:
    """uint8 (N, C', H', W') -> (N, C, H, W) of ``shape``: as is when it matches, else each image
    converted and resized as folder images are (a DataError naming the first one if not ``resize``)."""
    if tuple(images.shape[1:]) == tuple(shape):
        return images, 0
    if not resize:
        raise _refuse(names[0], tuple(images.shape[1:]), shape)
    c, h, w = shape
    if h != w:
        raise DataError(f"resizing needs a square model image; the model takes {w}x{h}")
    out = np.empty((len(images), c, h, w), np.uint8)
    for i, image in enumerate(images):
        hwc = image.transpose(1, 2, 0)
        pil = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
        out[i] = fit_image(pil, h, c).transpose(2, 0, 1)
    return out, len(images)


def _folder(root: Path, files: list[Path], shape: Shape, resize: bool) -> Inputs:
    """``files`` under ``root``, decoded in parallel; names are the paths under ``root``."""
    c, h, w = shape
    if h != w:
        raise DataError(f"image files are decoded to square images; the model takes {w}x{h}")
    converted = 0
    for rel in files:  # headers only: cheap
        try:
            with Image.open(root / rel) as im:
                size, bands = im.size, len(im.getbands())
        except Exception:  # unreadable: decoding below reports and skips it
            continue
        if size != (w, h) or (bands in (1, 3) and bands != c):
            if not resize:
                raise _refuse(str(root / rel), (bands, size[1], size[0]), shape)
            converted += 1
    cfg = DataConfig(name="folder", path=str(root), image_size=h, channels=c)
    images, kept, failures = _decode_all(root, files, cfg, progress=False)
    names = [p.as_posix() for p in kept]
    return Inputs(torch.from_numpy(images), names, str(root), failures, converted)


def _npz(path: Path, shape: Shape, resize: bool) -> Inputs:
    from vaelab.data.npz import _images

    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in ("images", "test_images", "x_test") if k in archive.files), None)
        if key is None:
            raise DataError(f"{path} has no 'images', 'test_images' or 'x_test' array to score")
        images = _images(path, archive[key], key)
    names = [f"{path.name}[{i}]" for i in range(len(images))]
    fitted, converted = fit_array(images, shape, resize, names)
    return Inputs(torch.from_numpy(fitted), names, str(path), converted=converted)


def read_idx_images(path: Path) -> np.ndarray:
    """Any IDX file of unsigned-byte images (N, H, W), gzipped if its name ends in .gz."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} could not be read as an IDX file ({exc})") from None
    if len(data) < 16 or struct.unpack(">I", data[:4])[0] != IDX_UBYTE_3D:
        raise DataError(f"{path} is not an IDX images file (magic 0x00000803 with 3 dimensions)")
    n, h, w = struct.unpack(">3I", data[4:16])
    if len(data) != 16 + n * h * w:
        raise DataError(f"{path} holds {len(data) - 16} pixel bytes; its header promises {n}x{h}x{w}")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, h, w).copy()


def _is_idx(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and struct.unpack(">I", head)[0] == IDX_UBYTE_3D


def load_inputs(
    source: str,
    shape: Shape,
    *,
    resize: bool = True,
    split: str = "test",
    count: int = 2000,
    seed: int = 0,
    data_dir: str | None = None,
) -> Inputs:
    """The images ``source`` names, at ``shape`` (see the module docstring); DataError if none."""
    from vaelab.data.ood_sets import OOD_SETS, make_ood_set

    path = Path(source).expanduser()
    ood = source.removeprefix("ood:")
    dataset_name = source in DatasetName.__args__ and source not in ("folder", "npz", "packed")
    if source.startswith("ood:") or (ood in OOD_SETS and not path.exists() and not dataset_name):
        data = make_ood_set(ood, shape, count, seed, data_dir)
        names = [f"{data.name}[{i}]" for i in range(len(data))]
        return Inputs(data.images, names, data.name, labels=data.labels, class_names=data.class_names)
    if path.is_dir():
        files = find_images(path)
        if not files:
            raise DataError(f"no images under {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        inputs = _folder(path, files, shape, resize)
    elif path.is_file() and path.suffix == ".npz":
        inputs = _npz(path, shape, resize)
    elif path.is_file() and _is_idx(path):
        images = read_idx_images(path)
        names = [f"{path.name}[{i}]" for i in range(len(images))]
        fitted, converted = fit_array(images, shape, resize, names)
        inputs = Inputs(torch.from_numpy(fitted), names, str(path), converted=converted)
    elif path.is_file():
        inputs = _folder(path.parent, [Path(path.name)], shape, resize)
    elif dataset_name:
        from vaelab.data.registry import load_dataset

        data = load_dataset(DataConfig(name=source, data_dir=data_dir), split, progress=False)  # type: ignore[arg-type]
        names = [f"{source}:{split}[{i}]" for i in range(len(data))]
        fitted, converted = fit_array(data.images.numpy(), shape, resize, names)
        inputs = Inputs(torch.from_numpy(fitted), names, f"{source} ({split})", converted=converted)
    else:
        raise DataError(
            f"INPUTS {source!r} is not an existing folder, image, .npz or IDX file, nor a dataset name "
            f"(mnist, fashion-mnist, digits, dsprites) or OOD set (ood:{', ood:'.join(OOD_SETS)})"
        )
    if len(inputs.images) == 0:
        first = inputs.skipped[0] if inputs.skipped else "none found"
        raise DataError(f"no image in {source} could be read; first: {first}")
    return inputs


__all__ = ["Inputs", "fit_array", "load_inputs", "read_idx_images"]
