"""ImageDataset, the batches() fast path and to_float()."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from vaelab.data import ImageDataset, batches, to_float


def make_dataset(n: int = 50, labelled: bool = True, seed: int = 0) -> ImageDataset:
    """Images whose first pixel encodes nothing useful, with labels = index (unique ids)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 6, 5), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) if labelled else None
    return ImageDataset(images=images, labels=labels, name="toy", num_classes=n if labelled else None)


def test_dataset_basics() -> None:
    data = make_dataset(10)
    assert len(data) == 10 and data.image_shape == (1, 6, 5)
    assert "toy" in repr(data) and "tensor" not in repr(data)
    sub = data.subset(torch.tensor([3, 1]))
    assert sub.labels is not None and sub.labels.tolist() == [3, 1]
    assert torch.equal(sub.images[0], data.images[3]) and sub.name == "toy" and sub.num_classes == 10


def test_dataset_makes_images_contiguous_and_validates() -> None:
    images = torch.zeros(4, 5, 6, 1, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert ImageDataset(images, None, "x", None).images.is_contiguous()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(4, 1, 5, 5), None, "x", None)
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(4, 1, 5, 5, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), "x", 2)


def test_split_is_deterministic_disjoint_and_complete() -> None:
    data = make_dataset(50)
    train, val = data.split(0.2, seed=7)
    again_train, again_val = data.split(0.2, seed=7)
    other_train, _ = data.split(0.2, seed=8)
    assert len(train) == 40 and len(val) == 10
    assert train.labels is not None and val.labels is not None and other_train.labels is not None
    assert torch.equal(train.labels, again_train.labels) and torch.equal(val.images, again_val.images)
    assert not torch.equal(train.labels, other_train.labels)
    ids = set(train.labels.tolist()) | set(val.labels.tolist())
    assert ids == set(range(50)) and not set(train.labels.tolist()) & set(val.labels.tolist())


def test_split_with_zero_fraction_gives_empty_val() -> None:
    train, val = make_dataset(9).split(0.0, seed=0)
    assert len(train) == 9 and len(val) == 0 and val.image_shape == (1, 6, 5)
    with pytest.raises(ValueError):
        make_dataset(9).split(1.0, seed=0)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_every_index_once_per_epoch(drop_last: bool) -> None:
    data = make_dataset(50)
    seen = []
    for images, labels in batches(
        data, 8, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=drop_last
    ):
        assert images.dtype == torch.uint8 and labels is not None and len(images) == len(labels)
        assert torch.equal(images, data.images[labels])
        seen.extend(labels.tolist())
    if drop_last:
        assert len(seen) == 48 and len(set(seen)) == 48
    else:
        assert sorted(seen) == list(range(50))
        assert seen != list(range(50))


def test_batches_are_seeded_repeatable_and_epochs_differ() -> None:
    data = make_dataset(40)

    def epoch(generator: torch.Generator) -> list[int]:
        return [
            i for _, labels in batches(data, 7, shuffle=True, generator=generator) for i in labels.tolist()
        ]

    first, second = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert epoch(first) == epoch(second)
    assert epoch(first) != epoch(torch.Generator().manual_seed(3))  # the next epoch reshuffles


def test_batches_unshuffled_and_unlabelled() -> None:
    data = make_dataset(10, labelled=False)
    out = list(batches(data, 4, shuffle=False))
    assert [len(images) for images, _ in out] == [4, 4, 2]
    assert all(labels is None for _, labels in out)
    assert torch.equal(torch.cat([images for images, _ in out]), data.images)
    with pytest.raises(ValueError):
        next(batches(data, 0, shuffle=False))


class _CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.calls[getattr(func, "__name__", repr(func))] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cost_a_few_tensor_calls_per_batch_not_per_image(shuffle: bool) -> None:
    # What makes batches() fast is that no Python runs per image: a shuffled epoch is one randperm
    # and one gather per batch, an ordered one is views. Counting the calls checks that on any
    # machine, however busy, where timing it against a per-item DataLoader did not.
    data = make_dataset(6000)
    with _CountTorchCalls() as counter:
        epoch = list(batches(data, 100, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert [len(x) for x, _ in epoch] == [100] * 60
    assert sum(counter.calls.values()) <= 4 * len(epoch) + 2, counter.calls
    if shuffle:
        assert counter.calls["randperm"] == 1
    else:  # views into the dataset's storage: nothing copied
        first = epoch[0][0]
        assert first.untyped_storage().data_ptr() == data.images.untyped_storage().data_ptr()


def test_to_float_range_and_binarisation() -> None:
    pixels = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8)
    x = to_float(pixels)
    assert x.dtype == torch.float32 and x.min() == 0.0 and x.max() == 1.0
    assert to_float(pixels, "static").tolist() == [0, 0, 0, 1, 1, 1]
    many = torch.full((20000,), 64, dtype=torch.uint8)
    draw = to_float(many, "dynamic", torch.Generator().manual_seed(0))
    assert set(draw.unique().tolist()) <= {0.0, 1.0}
    assert abs(draw.mean().item() - 64 / 255) < 0.02
    redraw = to_float(many, "dynamic", torch.Generator().manual_seed(0))
    fresh = to_float(many, "dynamic", torch.Generator().manual_seed(1))
    assert torch.equal(draw, redraw) and not torch.equal(draw, fresh)
    assert to_float(pixels[:2], "dynamic").tolist() == [0.0, 0.0]  # p = 0 is never drawn as 1
    with pytest.raises(ValueError):
        to_float(pixels, "sometimes")
    with pytest.raises(ValueError):
        to_float(x)
