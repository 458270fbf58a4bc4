"""The conditional VAE: the label changes what encoder and decoder do; bad labels get clear errors."""

from __future__ import annotations

import pytest
import torch
from tests.models.tiny import conditional_vae

from vaelab.models import VAE
from vaelab.models.config import ModelConfig
from vaelab.models.guidance import takes_guidance


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


# --- label dropout: the null class that classifier-free guidance (models/guidance.py) needs ---------
def test_label_dropout_trains_a_null_class_for_encoder_and_decoder():
    model = conditional_vae(dropout=0.5)
    cond = model.condition
    assert takes_guidance(model) and cond.label_maps.num_embeddings == 4  # 3 classes + the null class
    z = torch.randn(2, 4)
    null = cond.null_labels(2)
    assert null.tolist() == [3, 3]
    assert torch.equal(cond.decoder_input(z, null), torch.cat([z, torch.zeros(2, 3)], dim=1))
    # In training about half the labels are dropped to the null class; in eval none are.
    torch.manual_seed(1)
    dropped = cond.drop_labels(torch.zeros(10_000, dtype=torch.long))
    assert set(dropped.unique().tolist()) == {0, 3} and 0.47 < float((dropped == 3).double().mean()) < 0.53
    x, y = torch.rand(12, 1, 8, 8), torch.tensor([0, 1, 2] * 4)
    with torch.no_grad():
        as_labelled = model.encode(x, y).mean
        as_null = model.posterior(model.encoder(cond.encoder_input(x, cond.null_labels(12)))).mean
        assert torch.equal(model(x, y).posterior.mean, as_labelled)  # eval mode: no dropout
    model.train()
    torch.manual_seed(2)
    out = model(x, y)
    # Training: each image was encoded with its label or with the null class, and some with each.
    labelled = (out.posterior.mean == as_labelled).all(1)
    assert torch.equal(labelled, ~(out.posterior.mean == as_null).all(1))
    assert 0 < int(labelled.sum()) < 12
    assert out.elbo.shape == (12,) and torch.isfinite(out.elbo).all()
    out.elbo.mean().backward()
    assert model.condition.label_maps.weight.grad[3].abs().sum() > 0  # the null map learns
    # Without dropout the state dict is what it always was: saved models load unchanged.
    assert _model().condition.label_maps.num_embeddings == 3 and not takes_guidance(_model())
