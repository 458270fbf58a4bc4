"""The procedural dSprites-like set holds exactly the factor combinations it claims, each once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.data.dsprites import DSpritesGrid, factor_table, make_dsprites, render

GRID = DSpritesGrid(shapes=3, scales=2, orientations=3, positions_x=4, positions_y=3)


def test_every_combination_exactly_once():
    data = make_dsprites(GRID)
    assert data.factor_sizes == (3, 2, 3, 4, 3)
    assert data.images.shape == (3 * 2 * 3 * 4 * 3, 1, 64, 64)
    rows = {tuple(r) for r in data.factors.tolist()}
    assert len(rows) == len(data)
    expected = {
        (a, b, c, d, e)
        for a in range(3)
        for b in range(2)
        for c in range(3)
        for d in range(4)
        for e in range(3)
    }
    assert rows == expected
    assert torch.equal(data.labels, data.factors[:, 0]) and data.num_classes == 3


def test_images_follow_their_factors():
    data = make_dsprites(GRID)
    assert set(np.unique(data.images.numpy())) == {0, 255}
    # Every image shows a sprite, and distinct combinations give distinct images.
    assert (data.images.flatten(1).amax(1) == 255).all()
    assert len({bytes(img.numpy().tobytes()) for img in data.images}) == len(data)
    # Moving right moves the sprite's centre of mass right; a bigger scale covers more pixels.
    f = factor_table(GRID)
    cols = torch.arange(64, dtype=torch.float64)
    pick = [(0, 1, 0, 0, 1), (0, 1, 0, 3, 1)]
    idx = [int(np.flatnonzero((f == np.array(p)).all(1))[0]) for p in pick]
    mass = data.images[idx, 0].double()
    centres = (mass.sum(1) * cols).sum(1) / mass.sum((1, 2))
    assert centres[1] > centres[0] + 10
    small, big = render(GRID, np.array([[1, 0, 0, 1, 1], [1, 1, 0, 1, 1]]))
    assert (big > 0).sum() > (small > 0).sum()


def test_cached_copy_is_identical(tmp_path):
    first = make_dsprites(GRID)
    again = make_dsprites(GRID)  # read back from the .npz cache
    assert torch.equal(first.images, again.images) and torch.equal(first.factors, again.factors)


def test_splits_keep_factors():
    data = make_dsprites(GRID)
    train, test = data.split(0.25, 0)
    assert len(train) + len(test) == len(data)
    assert torch.equal(test.images, data.images[_positions(data, test)])


def _positions(data, part) -> torch.Tensor:
    lookup = {tuple(r): i for i, r in enumerate(data.factors.tolist())}
    return torch.tensor([lookup[tuple(r)] for r in part.factors.tolist()])


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="shapes must be 1 to 3"):
        DSpritesGrid(shapes=4)
