"""The ResNet parts' spatial latent: z as a (channels, side, side) map at the lowest resolution."""

from __future__ import annotations

import pytest
import torch

from vaelab.models import VAE
from vaelab.models.config import ModelConfig


def spatial_config(latent_dim: int = 64, **extra) -> ModelConfig:
    parts = {"channels": [8, 16], "patch": 2, "latent": "spatial"}
    return ModelConfig(
        image_shape=(3, 16, 16),
        latent_dim=latent_dim,
        encoder={"name": "resnet", **parts},
        decoder={"name": "resnet", "channels": [16, 8], "patch": 2, "latent": "spatial"},
        likelihood={"name": "discretized_gaussian"},
        **extra,
    )


def test_spatial_latent_is_a_map_per_position():
    torch.manual_seed(0)
    model = VAE(spatial_config(64)).eval()  # 16x16 / patch 2 / one halving = 4x4 positions x 4 channels
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    assert out.z.shape == (2, 64) and out.kl_groups.shape == (2, 64)
    # Each latent position sees its own region: changing one image corner moves the code of that
    # corner's position much more than the code of the opposite corner.
    y = x.clone()
    y[:, :, :4, :4] = 1 - y[:, :, :4, :4]
    delta = (model.encode(y).mean - model.encode(x).mean).abs().view(2, 4, 4, 4)
    assert delta[:, :, 0, 0].sum() > 5 * delta[:, :, 3, 3].sum()
    assert model.sample(3).shape == (3, 3, 16, 16)


def test_spatial_latent_size_must_fill_the_map():
    with pytest.raises(ValueError, match="divisible by 16"):
        VAE(spatial_config(60))


def test_encoder_and_decoder_must_agree_on_the_layout():
    with pytest.raises(ValueError, match="set the same 'latent' on both"):
        ModelConfig(
            image_shape=(3, 16, 16),
            latent_dim=64,
            encoder={"name": "resnet", "channels": [8, 16], "patch": 2, "latent": "spatial"},
            decoder={"name": "resnet", "channels": [16, 8], "patch": 2},
        )


def test_vector_layout_keeps_saved_weight_names():
    """Models saved before the spatial option (vector latent) must load unchanged."""
    config = ModelConfig(
        image_shape=(1, 8, 8),
        encoder={"name": "resnet", "channels": [4, 8]},
        decoder={"name": "resnet", "channels": [8, 4]},
    )
    names = set(VAE(config).state_dict())
    assert {"encoder.head.2.weight", "decoder.head.weight"} <= names
