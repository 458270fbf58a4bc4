"""Tiny configs for every registered part, shared by the model and part contract tests.

A part is built from its config's defaults with the overrides in ``TINY`` (which only make known parts
small and fast); a part registered without an entry here is tested at its defaults, so registering it
is enough for the contract tests to cover it.
"""

from __future__ import annotations

from typing import Any

import torch

from vaelab.errors import ConfigError
from vaelab.models import VAE, ModelConfig
from vaelab.models.registry import DECODERS, ENCODERS, LIKELIHOODS

TINY: dict[str, dict[str, dict[str, Any]]] = {
    "encoder": {
        "mlp": {"hidden_dims": [16]},
        "conv": {"channels": [4, 8], "hidden_dim": 16},
        "resnet": {"channels": [4, 8]},
    },
    "decoder": {
        "mlp": {"hidden_dims": [16]},
        "conv": {"channels": [8, 4], "hidden_dim": 16},
        "resnet": {"channels": [8, 4]},
        "ladder": {"channels": [8, 4], "latent_layers": [1, 1], "latent_channels": 2},
    },
    "prior": {"vamp": {"components": 3}},
    "likelihood": {
        "logistic_mixture": {"components": 2},
        "pixelcnn": {"components": 2, "hidden": 8, "kernel": 3},
    },
    "condition": {"label": {"num_classes": 3}},
}


def part(kind: str, name: str, **options: Any) -> dict[str, Any]:
    """The config dict of part ``name`` of ``kind`` (encoder, decoder, ...): tiny where known."""
    return {"name": name, **TINY.get(kind, {}).get(name, {}), **options}


def model_config(shape: tuple[int, int, int] = (1, 12, 12), latent_dim: int = 3, **parts: Any) -> ModelConfig:
    """A validated tiny ``ModelConfig``; ``parts`` maps a kind to a part name or a config dict."""
    chosen = {"encoder": "mlp", "decoder": "mlp", **parts}
    data = {
        kind: part(kind, value) if isinstance(value, str) else value
        for kind, value in chosen.items()
        if value is not None
    }
    return ModelConfig.model_validate({"image_shape": shape, "latent_dim": latent_dim, **data})


def tiny_vae(shape: tuple[int, int, int] = (1, 12, 12), latent_dim: int = 3, **parts: Any) -> VAE:
    """A tiny VAE of the named parts (mlp encoder and decoder unless given)."""
    return VAE(model_config(shape, latent_dim, **parts))


def conditional_vae(likelihood: dict | None = None, decoder: str = "mlp", dropout: float = 0.5) -> VAE:
    """A tiny conditional VAE on 1 x 8 x 8 images, 3 classes, 4 latents, trained (if at all) with label
    ``dropout``; the ladder decoder gets a resnet encoder. In eval mode, seeded."""
    torch.manual_seed(0)
    encoder = "resnet" if decoder == "ladder" else "mlp"
    parts: dict[str, Any] = {"condition": {"name": "label", "num_classes": 3, "label_dropout": dropout}}
    if likelihood is not None:
        parts["likelihood"] = likelihood
    return VAE(model_config((1, 8, 8), 4, encoder=encoder, decoder=part("decoder", decoder), **parts)).eval()


def likelihood_channels(likelihood: dict[str, Any]) -> int:
    """1 if the likelihood of this config dict models one-channel images, else 3 (one coupling R, G, B)."""
    cfg = model_config(likelihood=likelihood).likelihood
    try:
        LIKELIHOODS[cfg.name](cfg, 1)
    except ConfigError:
        return 3
    return 1


def encoder_can_feed(encoder: str, decoder: str, shape: tuple[int, int, int] = (1, 12, 12)) -> bool:
    """Whether decoder ``decoder`` accepts encoder ``encoder`` (a ladder needs one with features)."""
    cfg = model_config(shape, encoder=encoder, decoder=decoder)
    features = ENCODERS[encoder](cfg.encoder, shape, 6).feature_channels
    try:
        DECODERS[decoder].check_encoder(cfg.decoder, cfg.encoder, features)
    except ConfigError:
        return False
    return True
