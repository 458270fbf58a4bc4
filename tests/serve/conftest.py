"""Fixtures for the web-app tests: tiny trained runs on blob images, and apps over them.

``app`` serves two unconditional single-latent models (MLP and conv); ``variant_app`` serves a
conditional one (the label of each blob's quadrant; trained with label dropout, so it takes guidance)
and a hierarchical one (a ladder decoder).
"""

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
OTHER_VARIANTS = {
    "cvae": [*VARIANTS["mlp"], "--set", "model.condition={name: label, label_dropout: 0.2}"],
    "ladder": [
        "--set", "model.encoder={name: resnet, channels: [8, 6]}",
        "--set", "model.decoder={name: ladder, channels: [6, 8], latent_layers: [1, 1], latent_channels: 2}",
    ],
}  # fmt: skip


def train_runs(root: Path, variants: dict[str, list[str]]) -> dict[str, Path]:
    """Train each variant for 2 epochs on 240 blob images (about a second each); their run directories."""
    images, labels = blobs()
    npz = root / "blobs.npz"
    np.savez(npz, images=images, labels=labels)
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(root / "cache"))
        for name, flags in variants.items():
            run = root / name
            args = ["train", "--dataset", str(npz), "--run-dir", str(run), *COMMON, *flags]
            assert main(args) == 0
            runs[name] = run
    return runs


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories of a tiny MLP VAE and a tiny conv VAE."""
    return train_runs(tmp_path_factory.mktemp("serve-runs"), VARIANTS)


@pytest.fixture(scope="session")
def variant_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories of a tiny conditional VAE (4 classes) and a tiny hierarchical (ladder) VAE."""
    return train_runs(tmp_path_factory.mktemp("serve-variant-runs"), OTHER_VARIANTS)


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


@pytest.fixture(scope="session")
def variant_app(variant_runs: dict[str, Path]):
    from vaelab.serve import create_app_from_paths

    return create_app_from_paths([variant_runs["cvae"], variant_runs["ladder"]])


@pytest.fixture
def variant_client(variant_app):
    from fastapi.testclient import TestClient

    with TestClient(variant_app) as c:
        yield c
