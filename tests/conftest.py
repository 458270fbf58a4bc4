"""Shared fixtures: small image sets the tests make themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaelab.data.synthetic import quadrant_squares

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def make_blobs(n: int = 240, side: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four-class synthetic images (see ``vaelab.data.synthetic.quadrant_squares``)."""
    return quadrant_squares(n, side, seed)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own decode cache, so tests never see each other's files."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def blobs_npz(tmp_path) -> Path:
    images, labels = make_blobs()
    path = tmp_path / "blobs.npz"
    np.savez(path, images=images, labels=labels)
    return path
