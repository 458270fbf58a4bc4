"""The conditional VAE: the label changes what encoder and decoder do; bad labels get clear errors."""

from __future__ import annotations

import pytest
import torch

from vaelab.models import VAE
from vaelab.models.config import ModelConfig
from vaelab.models.parts.base import Draw


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


# --- classifier-free guidance: label dropout in training, guided decoding at sampling ---------------
def _guided(likelihood: dict | None = None, decoder: str = "mlp", dropout: float = 0.5) -> VAE:
    from tests.models.tiny import model_config, part

    torch.manual_seed(0)
    encoder = "resnet" if decoder == "ladder" else "mlp"
    parts = {"condition": {"name": "label", "num_classes": 3, "label_dropout": dropout}}
    if likelihood is not None:
        parts["likelihood"] = likelihood
    return VAE(model_config((1, 8, 8), 4, encoder=encoder, decoder=part("decoder", decoder), **parts)).eval()


def test_label_dropout_trains_a_null_class_for_encoder_and_decoder():
    model = _guided(dropout=0.5)
    cond = model.condition
    assert model.takes_guidance and cond.label_maps.num_embeddings == 4  # 3 classes + the null class
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
        as_null = model._encode(x, cond.null_labels(12)).posterior.mean
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
    assert _model().condition.label_maps.num_embeddings == 3 and not _model().takes_guidance


def test_guidance_mixes_the_decoder_outputs_of_label_and_null_class():
    model = _guided()
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    logits = model._mean_path(z, y)
    null = model.condition.null_labels(5)
    uncond = model.likelihood.mean(model._decode(z, null, None, Draw()).params)
    for w in (0.0, 1.0, 2.5):
        want = torch.sigmoid(model._decode(z, null, None, Draw()).params * (1 - w) + w * logits)
        torch.testing.assert_close(model.decode_sample(z, y, guidance=w), want)
    torch.testing.assert_close(model.decode_sample(z, y, guidance=0.0), uncond)  # 0: unconditional
    torch.testing.assert_close(model.decode_sample(z, y, guidance=1.0), model.decode(z, y))


@pytest.mark.parametrize(
    ("likelihood", "guided"),
    [
        ({"name": "gaussian", "variance": "fixed"}, 1),
        ({"name": "gaussian", "variance": "shared"}, 1),
        ({"name": "gaussian", "variance": "learned"}, 1),  # the means; the log-scales stay conditional
        ({"name": "discretized_gaussian"}, 1),
        ({"name": "logistic_mixture", "components": 2}, 4),  # logits and means of 2 components
    ],
)
def test_guidance_moves_the_location_parameters_only(likelihood, guided):
    model = _guided(likelihood)
    assert model.likelihood.guided_channels() == guided
    cond, uncond = torch.randn(2, model.likelihood.param_channels, 8, 8), torch.randn(2, 1, 1, 1)
    uncond = uncond.expand_as(cond)
    mixed = model.likelihood.guide(cond, uncond, 3.0)
    torch.testing.assert_close(mixed[:, :guided], uncond[:, :guided] + 3.0 * (cond - uncond)[:, :guided])
    torch.testing.assert_close(mixed[:, guided:], cond[:, guided:])
    images = model.decode_sample(torch.randn(3, 4), torch.tensor([0, 1, 2]), guidance=2.0)
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_guidance_replays_the_lower_layers_noise_of_a_hierarchical_decoder():
    model = _guided(decoder="ladder")
    y = torch.tensor([0, 1, 2])
    a = model.sample(3, labels=y, guidance=2.0, generator=torch.Generator().manual_seed(4))
    b = model.sample(3, labels=y, guidance=2.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.shape == (3, 1, 8, 8)
    assert model.sample(3, labels=y, guidance=2.0).shape == (3, 1, 8, 8)  # no generator: the global RNG


def test_guidance_is_refused_clearly_where_it_is_not_defined():
    from vaelab.errors import UsageError
    from vaelab.generation import sample

    y = torch.tensor([0, 1, 2])
    with pytest.raises(UsageError, match="trained without: retrain with --set"):
        _model().sample(3, labels=y, guidance=2.0)
    _model().sample(3, labels=y, guidance=1.0)  # guidance 1 is plain sampling, for every model
    with pytest.raises(UsageError, match="unconditional"):
        sample(_model(None), 3, guidance=1.5)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="finite number >= 0"):
            sample(_guided(), 3, guidance=bad)
    pixelcnn = _guided({"name": "pixelcnn", "components": 2, "hidden": 8, "kernel": 3, "coupled": False})
    assert not pixelcnn.takes_guidance
    with pytest.raises(UsageError, match="not defined for the 'pixelcnn' likelihood"):
        pixelcnn.sample(3, labels=y, guidance=2.0)


def test_a_guided_model_round_trips_and_samples_the_same(tmp_path):
    from vaelab.generation import sample

    model = _guided()
    model.save_pretrained(tmp_path)
    again = VAE.from_pretrained(tmp_path)
    assert again.takes_guidance and again.config.condition.label_dropout == 0.5
    torch.testing.assert_close(sample(model, 6, seed=3, guidance=2.0), sample(again, 6, seed=3, guidance=2.0))
