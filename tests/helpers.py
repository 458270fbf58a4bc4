"""Small models the tests across folders share."""

from __future__ import annotations

from typing import Any

from vaelab.models import VAE, ModelConfig


def mlp_vae(side: int, latent_dim: int, hidden: int, **parts: Any) -> VAE:
    """An untrained MLP VAE on 1 x side x side images with one hidden layer of ``hidden`` units on
    each side, in eval mode; ``parts`` adds model config entries (a prior, a likelihood). Seed torch
    before calling for repeatable weights."""
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, side, side),
            "latent_dim": latent_dim,
            "encoder": {"name": "mlp", "hidden_dims": [hidden]},
            "decoder": {"name": "mlp", "hidden_dims": [hidden]},
            **parts,  # may replace image_shape (colour images)
        }
    )
    return VAE(cfg).eval()
