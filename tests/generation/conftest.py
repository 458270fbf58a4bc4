"""The tiny untrained VAE (8x8 images, 5 latents) the generation tests share."""

import pytest
import torch

from vaelab.models import VAE, ModelConfig


@pytest.fixture
def model() -> VAE:
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 8, 8),
            "latent_dim": 5,
            "encoder": {"name": "mlp", "hidden_dims": [16]},
            "decoder": {"name": "mlp", "hidden_dims": [16]},
        }
    )
    return VAE(cfg).eval()
