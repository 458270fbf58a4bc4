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


# A model small enough that a few epochs take about a second on two cores.
TINY_OVERRIDES = [
    "model.encoder.hidden_dims=[32]",
    "model.decoder.hidden_dims=[32]",
    "model.latent_dim=4",
    "train.batch_size=32",
    "train.grid_samples=16",
    "train.grid_reconstructions=8",
    "train.device=cpu",
]


@pytest.fixture
def tiny_config(blobs_npz):
    """Factory: a RunConfig for a tiny VAE on the blobs npz, ``epochs`` long, plus any overrides."""
    from vaelab.config import load_config

    def make(epochs: int, *extra: str):
        base = ["data.name=npz", f"data.path={blobs_npz}", f"train.epochs={epochs}"]
        return load_config(overrides=[*base, *TINY_OVERRIDES, *extra])

    return make
