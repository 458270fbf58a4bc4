"""Shared fixtures: small image sets the tests make themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def make_blobs(n: int = 240, side: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of a bright square at one of four positions (the label), with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = (rng.random((n, side, side)) * 40).astype(np.uint8)
    half = side // 2
    for i, lab in enumerate(labels):
        r, c = divmod(int(lab), 2)
        images[i, r * half : r * half + half, c * half : c * half + half] = 230
    return images, labels.astype(np.int64)


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
