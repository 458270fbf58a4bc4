"""Packed datasets: round trip, block-shuffled batches, errors, and training from a packed directory."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.data import DataConfig, DataError, ImageDataset, batches, load_dataset, open_packed, pack_dataset
from vaelab.data.packed import PackWriter, packed_batches


def dataset(n=1000, shape=(1, 6, 5)):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 7, "toy", 7)


def test_round_trip_across_shards(tmp_path):
    ds = dataset()
    pack_dataset(ds, tmp_path / "p", shard_bytes=30 * 97)  # 97 images per shard: many shards
    packed = open_packed(tmp_path / "p", verify=True)
    assert len(packed.shard_files) == 11 and len(packed) == 1000 and packed.image_shape == (1, 6, 5)
    back = packed.to_memory()
    assert torch.equal(back.images, ds.images) and torch.equal(back.labels, ds.labels)
    images, labels = packed.range(90, 200).read(5, 15)  # a read spanning a shard boundary
    assert torch.equal(images, ds.images[95:105]) and torch.equal(labels, ds.labels[95:105])


@pytest.mark.parametrize("block", [64, 100, 5000])
def test_block_shuffled_batches_cover_every_image_once(tmp_path, block):
    ds = dataset()
    packed = open_packed(pack_dataset(ds, tmp_path / "p", shard_bytes=30 * 128))
    seen = []
    blocks = replace(packed, block_images=block)
    epoch = packed_batches(blocks, 33, shuffle=True, generator=torch.Generator().manual_seed(1))
    for images, labels in epoch:
        assert len(images) <= 33
        seen += labels.tolist()
        # every image still matches its label: rows were moved together
        idx = [int((ds.images.flatten(1) == row.flatten()).all(1).nonzero()[0]) for row in images[:2]]
        assert [int(ds.labels[i]) for i in idx] == labels[:2].tolist()
    assert sorted(seen) == sorted(ds.labels.tolist())
    order1 = [
        b[1] for b in packed_batches(packed, 33, shuffle=True, generator=torch.Generator().manual_seed(1))
    ]
    order2 = [
        b[1] for b in packed_batches(packed, 33, shuffle=True, generator=torch.Generator().manual_seed(1))
    ]
    assert all(torch.equal(a, b) for a, b in zip(order1, order2, strict=True))
    assert sum(len(x) for x, _ in batches(packed, 50, shuffle=False)) == 1000


def test_load_dataset_serves_contiguous_train_and_test(tmp_path):
    pack_dataset(dataset(600), tmp_path / "p")
    cfg = DataConfig(name="packed", path=str(tmp_path / "p"))
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert len(train) == 500 and len(test) == 100
    tr, va = train.split(0.1)
    assert (len(tr), len(va)) == (450, 50)


def test_bad_packed_directories_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not a packed dataset"):
        open_packed(tmp_path)
    pack_dataset(dataset(300), tmp_path / "p", shard_bytes=30 * 100)
    shard = tmp_path / "p" / "images-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    open_packed(tmp_path / "p")  # sizes still fine
    with pytest.raises(DataError, match="fails its sha256"):
        open_packed(tmp_path / "p", verify=True)
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match=r"images-00001\.npy"):
        open_packed(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    index["format"] = "other"
    (tmp_path / "p" / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="index"):
        open_packed(tmp_path / "p")
    with pytest.raises(DataError, match="uint8"):
        PackWriter(tmp_path / "q", (1, 2, 2)).append(np.zeros((3, 1, 2, 2), np.float32))


def test_pack_cli_and_train_from_packed(blobs_npz, tmp_path):
    out = tmp_path / "packed"
    assert main(["data", "pack", str(blobs_npz), "--out", str(out), "--shard-mb", "1"]) == 0
    assert len(open_packed(out)) == 200  # the npz's train split (240 minus its held-out sixth)
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        str(out),
        "--epochs",
        "1",
        "--run-dir",
        str(run),
        "--no-progress",
        "--set",
        "model.encoder.hidden_dims=[16]",
        "--set",
        "model.decoder.hidden_dims=[16]",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert json.loads((run / "meta.json").read_text())["dataset"] == "blobs"
