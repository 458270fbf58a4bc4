"""The tiny untrained VAE (8x8 images, 5 latents) the generation tests share."""

import pytest
import torch
from tests.helpers import mlp_vae

from vaelab.models import VAE


@pytest.fixture
def model() -> VAE:
    torch.manual_seed(0)
    return mlp_vae(8, 5, 16)
