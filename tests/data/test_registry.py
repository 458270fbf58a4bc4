"""load_dataset dispatch, the fixed held-out test split, digits, the decode cache and the paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab.data.digits
from vaelab.data import DATASETS, HOLDOUT_FRACTION, DataConfig, DataError, cache_dir, data_root, load_dataset


def test_registry_names_match_the_config() -> None:
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "folder", "npz", "packed", "dsprites"}
    assert set(DATASETS) == set(DataConfig.model_fields["name"].annotation.__args__)
    with pytest.raises(ValueError):
        load_dataset(DataConfig(), "val")  # type: ignore[arg-type]


def test_digits_shape_labels_and_holdout() -> None:
    train = load_dataset(DataConfig(), "train", progress=False)
    test = load_dataset(DataConfig(), "test", progress=False)
    assert len(train) + len(test) == 5000 and len(test) == round(5000 * HOLDOUT_FRACTION)
    assert train.image_shape == (1, 28, 28) and train.name == "digits" and train.num_classes == 10
    for part in (train, test):
        assert part.labels is not None and part.labels.unique().tolist() == list(range(10))
    # Upright digits: ink is centred (MNIST's centre of mass), with an empty border row.
    mean = train.images.float().mean(dim=0)[0]
    assert mean[0].max() < 1 and mean[10:18, 10:18].mean() > 60


def test_npz_train_and_test_are_fixed_and_disjoint(tmp_path: Path) -> None:
    path = tmp_path / "ids.npz"
    np.savez(path, images=np.zeros((60, 2, 2), np.uint8), labels=np.arange(60))
    cfg = DataConfig(name="npz", path=str(path), split_seed=5)
    train = load_dataset(cfg, "train", progress=False)
    test = load_dataset(cfg, "test", progress=False)
    other_seed = load_dataset(cfg.model_copy(update={"split_seed": 6}), "test", progress=False)
    assert train.labels is not None and test.labels is not None and other_seed.labels is not None
    assert len(test) == 10 and torch.equal(test.labels, other_seed.labels)
    assert sorted(train.labels.tolist() + test.labels.tolist()) == list(range(60))


def test_second_load_reads_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(DataConfig(), progress=False)

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(vaelab.data.digits, "_decode_csv", no_decoding)
    second = load_dataset(DataConfig(), progress=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_corrupt_cache_is_rebuilt() -> None:
    first = load_dataset(DataConfig(), progress=False)
    (images_file,) = cache_dir().glob("digits-*.images.npy")
    images_file.write_bytes(images_file.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="unreadable"):
        second = load_dataset(DataConfig(), progress=False)
    assert torch.equal(first.images, second.images)
    assert images_file.stat().st_size > 1000  # rewritten
    third = load_dataset(DataConfig(), progress=False)
    assert torch.equal(first.images, third.images)


def test_unwritable_cache_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("VAELAB_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="Could not write the decode cache"):
        assert len(load_dataset(DataConfig(), progress=False)) > 0


def test_data_root_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(str(tmp_path / "given")) == tmp_path / "given"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("VAELAB_DATA")
    assert data_root(None) == tmp_path / "xdg" / "vaelab" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(None) == tmp_path / "home" / ".cache" / "vaelab" / "data"
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VAELAB_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "vaelab" / "cache"


def test_named_dataset_missing_offline_is_a_data_error(tmp_path: Path) -> None:
    cfg = DataConfig(name="fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="Fashion-MNIST files missing") as info:
        load_dataset(cfg, "train", progress=False)
    assert str(tmp_path / "fashion-mnist") in str(info.value)
