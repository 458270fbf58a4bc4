"""MNIST and Fashion-MNIST: one reader for the IDX file family, with verification and download.

Files live at ``<data root>/<name>/`` under their standard names, gzipped (preferred) or not. A
present file is checked for structure (magic number, dimensions, exact byte length) and sha256;
the sha256 must equal the official one or the one a ``SHA256SUMS`` file in the same folder lists
for that file name (a local mirror's own copy). A present file that fails is an error, never
re-downloaded or half-read. Missing files are downloaded (``cfg.download``) from the official
mirrors and verified against the official checksum only.

Checksums: MNIST .gz values as given by the maintainers and by tensorflow_datasets'
``url_checksums/mnist.txt``; Fashion-MNIST .gz values from tensorflow_datasets'
``url_checksums/fashion_mnist.txt`` (the same values recur in several independent projects next to
the official MD5s). The un-gzipped values are the sha256 of those files' decompressed contents.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vaelab.data.cache import Decoded, cached_decode
from vaelab.data.config import DataConfig
from vaelab.data.dataset import ImageDataset
from vaelab.data.download import DownloadFailed, download
from vaelab.data.errors import DataError
from vaelab.data.files import data_root, read_sha256sums, sha256_file

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


@dataclass(frozen=True)
class IdxFile:
    """One expected IDX file: its standard name (without .gz), header and official checksums."""

    stem: str
    magic: int
    shape: tuple[int, ...]
    sha256_gz: str
    sha256_raw: str


@dataclass(frozen=True)
class IdxSource:
    """A dataset in the IDX family: its folder name, mirrors and (images, labels) per split."""

    name: str
    title: str
    mirrors: tuple[str, ...]
    splits: dict[str, tuple[IdxFile, IdxFile]]
    num_classes: int


def _split_files(prefix: str, count: int, sums: tuple[str, str, str, str]) -> tuple[IdxFile, IdxFile]:
    """(images, labels) of one split; ``sums`` = images .gz, images raw, labels .gz, labels raw."""
    images = IdxFile(f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC, (count, 28, 28), sums[0], sums[1])
    labels = IdxFile(f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC, (count,), sums[2], sums[3])
    return images, labels


IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        splits={
            "train": _split_files(
                "train",
                60000,
                (
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                ),
            ),
            "test": _split_files(
                "t10k",
                10000,
                (
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
            ),
        },
        num_classes=10,
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        title="Fashion-MNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        splits={
            "train": _split_files(
                "train",
                60000,
                (
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
            ),
            "test": _split_files(
                "t10k",
                10000,
                (
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ),
        },
        num_classes=10,
    ),
}


def _content(path: Path) -> tuple[bytes, bool]:
    """The IDX bytes of ``path`` (decompressed when .gz) and whether the gzip stream was complete."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, True
    try:
        return gzip.decompress(raw), True
    except EOFError:
        # Truncated download: decompress what is there so the error can give the byte counts.
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(raw), False
    except (OSError, zlib.error) as error:
        raise DataError(
            f"{path} is not a valid gzip file ({error}). Delete it and load again to download it, or "
            f"replace it with a good copy."
        ) from error


def _parse(path: Path, spec: IdxFile) -> np.ndarray:
    """The array in ``path`` after checking magic number, dimensions and exact byte length."""
    data, complete = _content(path)
    redo = "Delete it and load again to download it, or replace it with a good copy."
    if len(data) < 4:
        raise DataError(f"{path} is truncated: it holds {len(data)} bytes, not even an IDX header. {redo}")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != spec.magic:
        kind = "images" if spec.magic == IMAGES_MAGIC else "labels"
        raise DataError(
            f"{path} is not an IDX {kind} file: magic number 0x{magic:08x}, expected 0x{spec.magic:08x}. "
            f"Check that the file is the one its name says. {redo}"
        )
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path} is truncated: {len(data)} bytes, shorter than its {header_len}-byte header. {redo}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    if shape != spec.shape:
        raise DataError(f"{path} holds an array of shape {shape}, expected {spec.shape}. {redo}")
    expected = header_len + math.prod(shape)
    if len(data) != expected or not complete:
        what = "decompresses to" if path.suffix == ".gz" else "holds"
        stream = "; its gzip stream ends early" if not complete else ""
        problem = "truncated" if len(data) < expected else "too long"
        raise DataError(
            f"{path} is {problem}: it {what} {len(data):,} bytes, its header promises exactly "
            f"{expected:,} bytes{stream}. {redo}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _accepted_sha256(path: Path, spec: IdxFile) -> tuple[str, str | None]:
    """(official sha256 for this file's form, the one its folder's SHA256SUMS lists or None)."""
    official = spec.sha256_gz if path.suffix == ".gz" else spec.sha256_raw
    return official, read_sha256sums(path.parent).get(path.name)


def read_idx(path: Path, spec: IdxFile, digest: str | None = None) -> np.ndarray:
    """Read and fully verify one IDX file (gzipped if its name ends in .gz) as a uint8 array.

    The sha256 (``digest``, computed when not given) must equal the official value for this file
    name or the one listed in a ``SHA256SUMS`` beside it. Structure is checked first even when the
    checksum fails, because "truncated: 1,000 of 7,840,016 bytes" says more than a hash mismatch.
    """
    digest = digest or sha256_file(path)
    array = _parse(path, spec)
    official, local = _accepted_sha256(path, spec)
    if digest not in (official, local):
        sums = path.parent / "SHA256SUMS"
        listed = f"nor the {local} listed in {sums}" if local else f"and {sums} lists none"
        raise DataError(
            f"{path} has sha256 {digest}, which matches neither the official {official} {listed} "
            f"for it. The file is corrupt or another version: delete it and load again to download "
            f"the official one, or, for a deliberate local copy, list its sha256 in {sums}."
        )
    return array


def _locate(folder: Path, spec: IdxFile) -> Path | None:
    """The present file for ``spec``: the .gz if there, else the un-gzipped one, else None."""
    for name in (f"{spec.stem}.gz", spec.stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fetch_missing(
    source: IdxSource, folder: Path, missing: list[IdxFile], allowed: bool, progress: bool
) -> None:
    """Download the ``missing`` files, or raise a DataError listing exactly those still missing."""
    how = (
        f"Put them (gzipped or not) in {folder}, or point data_dir / $VAELAB_DATA at a folder whose "
        f"{source.name}/ holds them."
    )
    if not allowed:
        names = ", ".join(f"{spec.stem}.gz" for spec in missing)
        raise DataError(
            f"{source.title} files missing from {folder}: {names}. "
            f"Downloading is off (download: false). {how}"
        )
    failures: list[tuple[IdxFile, DownloadFailed]] = []
    for spec in missing:
        try:
            download(f"{spec.stem}.gz", source.mirrors, folder / f"{spec.stem}.gz", spec.sha256_gz, progress)
        except DownloadFailed as error:
            failures.append((spec, error))
    if failures:
        names = ", ".join(f"{spec.stem}.gz" for spec, _ in failures)
        reasons = "; ".join(reason for _, error in failures for reason in error.reasons)
        raise DataError(
            f"{source.title} files missing from {folder}: {names}. Downloading them failed ({reasons}). {how}"
        )


def load_idx(
    source: IdxSource, root: Path, split: Literal["train", "test"], allow_download: bool, progress: bool
) -> ImageDataset:
    """One split of an IDX dataset found under ``root / source.name``, verified and cached."""
    folder = root / source.name
    specs = source.splits[split]
    missing = [spec for spec in specs if _locate(folder, spec) is None]
    if missing:
        _fetch_missing(source, folder, missing, allow_download, progress)
    paths = [_locate(folder, spec) for spec in specs]
    assert paths[0] is not None and paths[1] is not None  # _fetch_missing raised otherwise
    digests = [sha256_file(path) for path in paths]

    def decode() -> Decoded:
        images = read_idx(paths[0], specs[0], digests[0])
        labels = read_idx(paths[1], specs[1], digests[1]).astype(np.int64)
        if labels.size and labels.max() >= source.num_classes:
            raise DataError(
                f"{paths[1]} holds label {labels.max()}, but {source.title} has "
                f"{source.num_classes} classes. Replace the file with a good copy."
            )
        return Decoded(images[:, None].copy(), labels, {"num_classes": source.num_classes})

    # A cached entry is only reused for files that still pass verification now (a SHA256SUMS entry
    # may have been removed since), so check before the lookup, decoding only on failure.
    for path, spec, digest in zip(paths, specs, digests, strict=True):
        if digest not in _accepted_sha256(path, spec):
            read_idx(path, spec, digest)  # raises the precise structural or checksum error
    identity = {"name": source.name, "split": split, "sha256": digests}
    return cached_decode(f"{source.name}-{split}", identity, decode).to_dataset(source.name)


def load_idx_dataset(cfg: DataConfig, split: Literal["train", "test"], progress: bool) -> ImageDataset:
    """Registry entry for ``mnist`` and ``fashion-mnist``: the official train or test split."""
    return load_idx(IDX_SOURCES[cfg.name], data_root(cfg.data_dir), split, cfg.download, progress)
