"""Fixtures for the web-app tests: two tiny trained runs (MLP and conv) on blob images, and the app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaelab.cli import main

from .helpers import blobs

COMMON = ["--epochs", "2", "--no-progress", "--device", "cpu", "--set", "model.latent_dim=4"]
VARIANTS = {
    "mlp": ["--set", "model.encoder.hidden_dims=[32]", "--set", "model.decoder.hidden_dims=[32]"],
    "conv": [
        "--set", "model.encoder={name: conv, channels: [4, 8], hidden_dim: 16}",
        "--set", "model.decoder={name: conv, channels: [8, 4], hidden_dim: 16}",
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories of a tiny MLP VAE and a tiny conv VAE, 2 epochs each (about a second)."""
    root = tmp_path_factory.mktemp("serve-runs")
    images, labels = blobs()
    npz = root / "blobs.npz"
    np.savez(npz, images=images, labels=labels)
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(root / "cache"))
        for name, flags in VARIANTS.items():
            run = root / name
            args = ["train", "--dataset", str(npz), "--run-dir", str(run), *COMMON, *flags]
            assert main(args) == 0
            runs[name] = run
    return runs


@pytest.fixture(scope="session")
def app(tiny_runs: dict[str, Path]):
    from vaelab.serve import create_app_from_paths

    # The saved-model directory of one and the run directory of the other: both must work.
    return create_app_from_paths([tiny_runs["mlp"], tiny_runs["conv"] / "model"])


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c
