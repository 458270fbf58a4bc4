"""The cached feature classifier: trained once, stored as safetensors + JSON, never unpickled."""

import json

import pytest
import torch

from vaelab.data import DataConfig, DataError, ImageDataset, cache_dir, load_dataset
from vaelab.evaluation import features
from vaelab.evaluation.features import load_feature_space


@pytest.fixture
def blobs(blobs_npz):
    cfg = DataConfig(name="npz", path=str(blobs_npz))
    return load_dataset(cfg, "train"), load_dataset(cfg, "test")


def test_feature_net_learns_caches_and_reloads(blobs, monkeypatch):
    train_set, test_set = blobs
    space = load_feature_space(train_set, test_set)
    assert space.test_accuracy is not None and space.test_accuracy > 0.9
    assert space.test_images == len(test_set)
    files = sorted(p.name for p in space.path.iterdir())
    assert files == ["config.json", "model.safetensors"]  # no pickle anywhere
    meta = json.loads((space.path / "config.json").read_text())
    assert meta["fingerprint"] == space.fingerprint and meta["test_accuracy"] == space.test_accuracy
    assert space.path.parent == cache_dir() / "feature-nets"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached net should have been used")

    monkeypatch.setattr(features, "train_feature_net", no_training)
    again = load_feature_space(train_set, test_set)
    feats = again.embed(test_set.images)
    assert feats.shape == (len(test_set), 128) and feats.dtype == torch.float64
    torch.testing.assert_close(feats, space.embed(test_set.images))
    # Floats in [0, 1] and uint8 give the same features.
    torch.testing.assert_close(again.embed(test_set.images.float() / 255), feats)
    assert "test accuracy" in again.describe()


def test_a_corrupt_cache_entry_is_retrained_not_trusted(blobs):
    train_set, test_set = blobs
    space = load_feature_space(train_set, test_set)
    (space.path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    rebuilt = load_feature_space(train_set, test_set)
    torch.testing.assert_close(rebuilt.embed(test_set.images), space.embed(test_set.images))


def test_other_data_gets_another_net_and_unlabelled_data_is_refused(blobs):
    train_set, test_set = blobs
    a = load_feature_space(train_set, test_set)
    flipped = ImageDataset(train_set.images.flip(-1), train_set.labels, train_set.name, train_set.num_classes)
    assert load_feature_space(flipped, None).fingerprint != a.fingerprint
    unlabelled = ImageDataset(train_set.images, None, "u", None)
    with pytest.raises(DataError, match="no class labels"):
        load_feature_space(unlabelled)
