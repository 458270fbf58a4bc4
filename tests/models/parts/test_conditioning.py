"""The conditional VAE: the label changes what encoder and decoder do; bad labels get clear errors."""

from __future__ import annotations

import pytest
import torch

from vaelab.models import VAE
from vaelab.models.config import ModelConfig


def _model(num_classes: int | None = 3, encoder: str = "mlp") -> VAE:
    torch.manual_seed(0)
    condition = {"name": "label", "num_classes": num_classes} if num_classes else None
    return VAE(
        ModelConfig.model_validate(
            {
                "image_shape": (1, 8, 8),
                "latent_dim": 4,
                "encoder": {"name": encoder},
                "decoder": {"name": encoder},
                "condition": condition,
            }
        )
    ).eval()


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_label_changes_decoder_and_encoder_outputs(encoder):
    model = _model(encoder=encoder)
    z = torch.randn(2, 4)
    x = torch.rand(2, 1, 8, 8)
    zeros, ones = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    assert not torch.allclose(model.decode(z, zeros), model.decode(z, ones))
    assert not torch.allclose(model.encode(x, zeros).mean, model.encode(x, ones).mean)
    out = model(x, zeros)
    assert out.elbo.shape == (2,) and torch.isfinite(out.elbo).all()
    assert model.sample(5, labels=torch.arange(5) % 3).shape == (5, 1, 8, 8)


def test_label_errors_are_clear():
    model = _model()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="class 3 is out of range: this model has 3 classes"):
        model(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="class -1 is out of range"):
        model(x, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="conditional on 3 classes: pass a class label"):
        model(x)
    with pytest.raises(ValueError, match="got 3 labels for 2 images"):
        model(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="unconditional: it takes no class labels"):
        _model(None)(x, torch.tensor([0, 1]))


def test_conditional_model_round_trips(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    again = VAE.from_pretrained(tmp_path)
    assert again.num_classes == 3
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    assert torch.equal(model.decode(z, y), again.decode(z, y))
