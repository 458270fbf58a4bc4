"""The IDX reader: verification of present files, the missing-files error, downloads, real MNIST."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab.data.download
from vaelab.data import DataConfig, DataError, load_dataset
from vaelab.data.idx import IDX_SOURCES, IMAGES_MAGIC, load_idx, read_idx

from .helpers import (
    NOT_OFFICIAL,
    SHARED_DATASETS,
    idx_bytes,
    sha256,
    tiny_arrays,
    tiny_source,
    write_idx,
    write_sums,
)

TRAIN_IMAGES = tiny_source().splits["train"][0]


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_good_file_accepted_by_local_sha256sums(tmp_path: Path, suffix: str) -> None:
    images, _ = tiny_arrays()
    path = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_sums(tmp_path, path)
    np.testing.assert_array_equal(read_idx(path, TRAIN_IMAGES), images)


def test_good_file_accepted_by_official_checksum(tmp_path: Path) -> None:
    images, _ = tiny_arrays()
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    source = tiny_source(official={path.name: sha256(path)})
    np.testing.assert_array_equal(read_idx(path, source.splits["train"][0]), images)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_truncated_file_names_file_and_byte_counts(tmp_path: Path, suffix: str) -> None:
    images, _ = tiny_arrays()
    blob = idx_bytes(images)[:1000]
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(blob)[:-30] if suffix else blob)  # gzip: also cut the stream
    with pytest.raises(DataError, match="truncated") as info:
        read_idx(path, TRAIN_IMAGES)
    message = str(info.value)
    assert str(path) in message and f"{16 + 6 * 28 * 28:,}" in message
    if not suffix:
        assert "1,000 bytes" in message


def test_wrong_magic_names_both_numbers(tmp_path: Path) -> None:
    images, _ = tiny_arrays()
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, magic=0x00000D03)  # float32 data
    write_sums(tmp_path, path)
    with pytest.raises(DataError, match="magic number 0x00000d03") as info:
        read_idx(path, TRAIN_IMAGES)
    assert str(path) in str(info.value) and f"expected 0x{IMAGES_MAGIC:08x}" in str(info.value)


def test_wrong_dimensions_rejected(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 27, 28), np.uint8))
    write_sums(tmp_path, path)
    with pytest.raises(DataError, match=r"shape \(6, 27, 28\), expected \(6, 28, 28\)"):
        read_idx(path, TRAIN_IMAGES)


def test_wrong_checksum_rejected(tmp_path: Path) -> None:
    images, _ = tiny_arrays()
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    (tmp_path / "SHA256SUMS").write_text(f"{'ab' * 32}  {path.name}\n")
    with pytest.raises(DataError, match="sha256") as info:
        read_idx(path, TRAIN_IMAGES)
    message = str(info.value)
    assert (
        str(path) in message and sha256(path) in message and NOT_OFFICIAL in message and "ab" * 32 in message
    )


def test_unlisted_file_without_official_match_rejected(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", tiny_arrays()[0])
    with pytest.raises(DataError, match="lists none"):
        read_idx(path, TRAIN_IMAGES)


def _write_split(folder: Path, prefix: str, n: int, seed: int = 0) -> list[Path]:
    images, labels = tiny_arrays(n, seed)
    return [
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images),
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels),
    ]


def test_load_idx_train_and_test(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    paths = _write_split(folder, "train", 6) + _write_split(folder, "t10k", 4, seed=1)
    write_sums(folder, *paths)
    train = load_idx(tiny_source(), tmp_path, "train", allow_download=False, progress=False)
    test = load_idx(tiny_source(), tmp_path, "test", allow_download=False, progress=False)
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (4, 1, 28, 28)
    assert train.labels is not None and train.labels.dtype == torch.int64
    np.testing.assert_array_equal(train.labels.numpy(), tiny_arrays(6)[1])
    assert train.num_classes == 10 and train.name == "tiny"


def test_missing_files_listed_with_folder_when_download_off(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    write_idx(folder / "train-labels-idx1-ubyte.gz", tiny_arrays()[1])
    with pytest.raises(DataError) as info:
        load_idx(tiny_source(), tmp_path, "train", allow_download=False, progress=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(folder) in message
    assert "train-labels" not in message and "download: false" in message


def test_missing_files_listed_with_folder_when_offline(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_idx(tiny_source(), tmp_path, "test", allow_download=True, progress=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "tiny") in message and "network disabled in tests" in message
    assert not (tmp_path / "tiny").exists() or not any((tmp_path / "tiny").iterdir())


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Patch the URL opener to serve ``files`` by name from any mirror; returns the URLs asked."""
    asked: list[str] = []

    def opener(url: str, timeout: float | None = None) -> io.BytesIO:
        asked.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(vaelab.data.download, "urlopen", opener)
    return asked


def test_download_with_wrong_checksum_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = tiny_arrays()
    served = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    asked = _serve(monkeypatch, served)
    with pytest.raises(DataError) as info:  # tiny_source's official checksums match nothing
        load_idx(tiny_source(), tmp_path, "train", allow_download=True, progress=False)
    assert "served a file with sha256" in str(info.value) and "train-images-idx3-ubyte.gz" in str(info.value)
    assert len(asked) == 4  # both files, both mirrors
    assert list((tmp_path / "tiny").iterdir()) == []  # no partial or temp files


def test_download_with_official_checksum_writes_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = tiny_arrays()
    served = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    official = {name: hashlib.sha256(blob).hexdigest() for name, blob in served.items()}
    asked = _serve(monkeypatch, served)
    train = load_idx(tiny_source(official=official), tmp_path, "train", allow_download=True, progress=False)
    assert asked == [f"https://mirror-a.invalid/{name}" for name in served]
    for name, blob in served.items():
        assert (tmp_path / "tiny" / name).read_bytes() == blob
    np.testing.assert_array_equal(train.images[:, 0].numpy(), images)


def test_present_bad_file_is_not_redownloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiny"
    paths = _write_split(folder, "train", 6)
    paths[0].write_bytes(paths[0].read_bytes()[:-40])
    write_sums(folder, paths[1])
    asked = _serve(monkeypatch, {})
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_idx(tiny_source(), tmp_path, "train", allow_download=True, progress=False)
    assert asked == []


def test_official_checksums_match_the_identical_local_files() -> None:
    """The README of the local copy says these three files are the official ones."""
    folder = SHARED_DATASETS / "mnist"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    for split in ("train", "test"):
        for spec in IDX_SOURCES["mnist"].splits[split]:
            if spec.stem != "train-images-idx3-ubyte":
                assert sha256(folder / f"{spec.stem}.gz") == spec.sha256_gz


def test_real_mnist_loads() -> None:
    if not (SHARED_DATASETS / "mnist").is_dir():
        pytest.skip(f"{SHARED_DATASETS / 'mnist'} not present")
    cfg = DataConfig(name="mnist", data_dir=str(SHARED_DATASETS), download=False)
    train = load_dataset(cfg, "train", progress=False)
    test = load_dataset(cfg, "test", progress=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    for part in (train, test):
        assert part.labels is not None and part.labels.unique().tolist() == list(range(10))
    assert test.labels is not None and test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
