"""The OOD sets made offline (data/ood_sets.py) and the images `vaelab score` reads (data/inputs.py)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import SHARED_DATASETS

from vaelab.data.errors import DataError
from vaelab.data.inputs import load_inputs, read_idx_images
from vaelab.data.ood_sets import LETTERS, OOD_SETS, default_pairs, make_ood_set

OFFLINE = [name for name in OOD_SETS if name not in ("mnist", "mnist-inverted", "photos")]
HAS_MNIST = (SHARED_DATASETS / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
HAS_PHOTOS = (SHARED_DATASETS / "photos32" / "photos32.npz").is_file()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", OFFLINE)
def test_offline_sets_are_deterministic_at_any_shape(name, shape):
    a = make_ood_set(name, shape, 24, seed=5)
    b = make_ood_set(name, shape, 24, seed=5)
    c = make_ood_set(name, shape, 24, seed=6)
    assert a.images.shape == (24, *shape) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.name == f"ood:{name}"


def test_letters_look_like_mnist_digits():
    images = make_ood_set("letters", (1, 28, 28), 50, seed=0).images.float()
    rows, cols = (images[:, 0] > 0).any(2), (images[:, 0] > 0).any(1)
    assert rows.sum(1).max() <= 21 and cols.sum(1).max() <= 21  # fitted into 20x20, as MNIST's digits
    grid = torch.arange(28.0)
    mass = images[:, 0].sum((1, 2))
    cy, cx = (images[:, 0].sum(2) * grid).sum(1) / mass, (images[:, 0].sum(1) * grid).sum(1) / mass
    assert (cy - 13.5).abs().max() < 1.5 and (cx - 13.5).abs().max() < 1.5  # centre of mass centred
    assert images.amax((1, 2, 3)).min() > 200  # every glyph drawn white on black
    colour = make_ood_set("letters", (3, 32, 32), 50, seed=0).images.float()
    assert (colour[:, 0] != colour[:, 1]).any()  # tinted


def test_each_letter_is_labelled_with_the_letter_drawn():
    data = make_ood_set("letters", (1, 28, 28), 400, seed=0)
    assert data.class_names is not None and "".join(data.class_names) == LETTERS and data.num_classes == 52
    assert data.labels is not None and data.labels.shape == (400,) and data.labels.min() >= 0
    ink = data.images[:, 0] > 64
    # Fitted into the same 20 px box, a narrow letter's ink is far narrower than a wide one's.
    width = ink.any(1).sum(1).float()
    label = [data.class_names[int(c)] for c in data.labels]
    narrow = [i for i, c in enumerate(label) if c in "Iijl"]
    wide = [i for i, c in enumerate(label) if c in "MWmw"]
    assert len(narrow) > 5 and len(wide) > 5
    assert width[narrow].mean() < 0.6 * width[wide].mean()
    again = make_ood_set("letters", (1, 28, 28), 400, seed=0)
    assert torch.equal(again.labels, data.labels)  # the labels are as deterministic as the images


@pytest.mark.skipif(not (HAS_MNIST and HAS_PHOTOS), reason="needs the shared MNIST and photos32 files")
def test_sets_from_shared_data(monkeypatch):
    monkeypatch.setenv("VAELAB_DATA", str(SHARED_DATASETS))
    mnist = make_ood_set("mnist", (1, 28, 28), 10, seed=0).images
    inverted = make_ood_set("mnist-inverted", (1, 28, 28), 10, seed=0).images
    assert mnist.shape == inverted.shape == (10, 1, 28, 28)
    assert mnist.float().mean() < 80 < inverted.float().mean()  # dark ink on white once inverted
    assert make_ood_set("photos", (1, 28, 28), 10).images.shape == (10, 1, 28, 28)
    assert make_ood_set("mnist", (3, 32, 32), 10).images.shape == (10, 3, 32, 32)


def test_missing_source_files_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"photos32\.npz"):
        make_ood_set("photos", (1, 28, 28), 4)
    with pytest.raises(DataError, match="unknown OOD set 'nope'"):
        make_ood_set("nope", (1, 28, 28), 4)
    assert "mnist" not in default_pairs((1, 28, 28)) and "photos" not in default_pairs((3, 32, 32))


# --- inputs ---------------------------------------------------------------------------------------
def _folder(tmp_path, n=5):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((12, 12), 20 * i, np.uint8)).save(root / f"a{i}.png")
    return root


def test_a_folder_with_one_corrupt_file_loads_all_the_others(tmp_path):
    root = _folder(tmp_path)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    inputs = load_inputs(str(root), (1, 12, 12))
    assert inputs.names == [f"a{i}.png" for i in range(5)]
    assert inputs.images[:, 0, 0, 0].tolist() == [0, 20, 40, 60, 80]
    assert len(inputs.skipped) == 1 and inputs.skipped[0].startswith("broken.png:")


def test_wrong_sizes_are_converted_or_refused_by_name(tmp_path):
    root = _folder(tmp_path)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "sub" / "big.png")
    inputs = load_inputs(str(root), (1, 12, 12))
    assert inputs.converted == 1 and "sub/big.png" in inputs.names
    with pytest.raises(DataError, match=r"big\.png is 30x20 with 3 channel\(s\) but the model takes 12x12"):
        load_inputs(str(root), (1, 12, 12), resize=False)
    one = load_inputs(str(root / "a3.png"), (3, 16, 16))  # one file; grey to RGB, resized
    assert one.names == ["a3.png"] and one.images.shape == (1, 3, 16, 16) and one.converted == 1


def test_npz_idx_dataset_names_and_ood_sets(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    got = load_inputs(str(tmp_path / "x.npz"), (1, 12, 12))
    assert got.names[2] == "x.npz[2]" and np.array_equal(got.images[:, 0].numpy(), images)
    assert load_inputs(str(tmp_path / "x.npz"), (1, 6, 6)).images.shape == (7, 1, 6, 6)
    raw = struct.pack(">I3I", 0x803, 7, 12, 12) + images.tobytes()
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    idx = load_inputs(str(tmp_path / "x-idx3-ubyte.gz"), (1, 12, 12))
    assert np.array_equal(idx.images[:, 0].numpy(), images) and idx.names[0] == "x-idx3-ubyte.gz[0]"
    assert read_idx_images(tmp_path / "x-idx3-ubyte.gz").shape == (7, 1, 12, 12)
    (tmp_path / "short-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="header promises"):
        load_inputs(str(tmp_path / "short-idx3-ubyte"), (1, 12, 12))
    noise = load_inputs("ood:uniform-noise", (1, 12, 12), count=9)
    assert noise.images.shape == (9, 1, 12, 12) and noise.names[0] == "ood:uniform-noise[0]"
    assert load_inputs("constant", (1, 12, 12), count=3).images.shape == (3, 1, 12, 12)
    dsprites = load_inputs("dsprites", (1, 28, 28))
    assert dsprites.images.shape[1:] == (1, 28, 28) and dsprites.names[0] == "dsprites:test[0]"
    with pytest.raises(DataError, match="not an existing folder"):
        load_inputs(str(tmp_path / "missing"), (1, 12, 12))


def test_a_folder_of_only_corrupt_files_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"no image in .* could be read; first: x\.png"):
        load_inputs(str(tmp_path), (1, 12, 12))
