"""Fixtures of the evaluation tests: a small VAE trained on quadrant images, with its OOD background
and density of states."""

from __future__ import annotations

import pytest
import torch
from tests.helpers import mlp_vae

from vaelab.data import ImageDataset
from vaelab.evaluation.ood.background import BackgroundSpec, fit_background
from vaelab.evaluation.ood.scores import Scorer


@pytest.fixture(scope="module")
def blob_model():
    """An MLP VAE trained briefly on 12x12 quadrant images, 64 of them held out, and a background."""
    from vaelab.data.synthetic import quadrant_squares

    images, _ = quadrant_squares(600, 12, seed=3)
    data = torch.from_numpy(images[:, None])
    torch.manual_seed(0)
    model = mlp_vae(12, 4, 32, likelihood={"name": "bernoulli"}).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        x = data[torch.randint(0, 536, (64,))].float() / 255
        out = model(x)
        loss = -(out.log_px_z - out.kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    train = ImageDataset(data[:536], None, "quadrants", None)
    # noise 0.2: these training images are themselves noisy, so the background needs more of it to stay
    # tolerant of the uniform noise of the test below
    spec = BackgroundSpec(epochs=3, batch_size=32, lr=1e-2, noise=0.2)
    background = fit_background(model, train, "none", spec)
    Scorer(model, background=background).fit_states(train)  # the density of states, on training images
    return model, ImageDataset(data[536:], None, "quadrants", None), background
