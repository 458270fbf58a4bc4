"""Which images an evaluation sees: binarised once by seed, subset by seed, the same for every reader."""

from __future__ import annotations

import pytest
import torch

from vaelab.data import ImageDataset
from vaelab.errors import UsageError
from vaelab.evaluation import evaluation_inputs, fixed_inputs, seeded_subset
from vaelab.evaluation.eval_set import evaluation_seeds


def _greys(n: int = 40) -> ImageDataset:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 1, 6, 6), generator=gen, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 4, "greys", 4)


def test_dynamic_binarisation_is_binary_and_fixed_by_its_seed() -> None:
    data = _greys()
    a, b, c = (fixed_inputs(data, "dynamic", s) for s in (7, 7, 8))
    assert set(a.images.unique().tolist()) <= {0, 255}
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(a.labels, data.labels)
    # Bernoulli(grey / 255): brighter pixels come out on more often.
    bright = data.images > 200
    assert a.images[bright].float().mean() > 200 > a.images[data.images < 55].float().mean()
    assert fixed_inputs(data, "none", 7) is data


def test_seeded_subset_is_repeatable_in_dataset_order_and_checks_its_size() -> None:
    data = _greys()
    one, two = seeded_subset(data, 10, 5), seeded_subset(data, 10, 5)
    assert len(one) == 10 and torch.equal(one.images, two.images)
    rows = [next(i for i in range(len(data)) if torch.equal(data.images[i], img)) for img in one.images]
    assert rows == sorted(rows)
    assert seeded_subset(data, None, 5) is data and seeded_subset(data, 400, 5) is data
    with pytest.raises(UsageError, match="at least 1"):
        seeded_subset(data, 0, 5)


def test_an_image_keeps_its_binary_pixels_whatever_the_subset() -> None:
    """Binarised before subsetting: 10 and 30 images of one seed share their binary images, and the
    whole set holds each subset's images at the chosen rows (so a benchmark and `vaelab evaluate`
    of one seed score the same images)."""
    data = _greys()
    whole = evaluation_inputs(data, "dynamic", None, 11)
    binarize_seed, subset_seed = evaluation_seeds(11)
    assert torch.equal(whole.images, fixed_inputs(data, "dynamic", binarize_seed).images)
    small = evaluation_inputs(data, "dynamic", 10, 11)
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(subset_seed))[:10].sort().values
    assert torch.equal(small.images, whole.images[rows])
    assert not torch.equal(small.images, evaluation_inputs(data, "dynamic", 10, 12).images)
