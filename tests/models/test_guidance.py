"""Classifier-free guidance: the decoder outputs of label and null class mixed as uncond + w (cond - uncond)
on each likelihood's location parameters, the same lower-layer noise in both passes, and clear refusals
where guidance is not defined."""

from __future__ import annotations

import pytest
import torch
from tests.models.tiny import conditional_vae, tiny_vae

from vaelab.errors import UsageError
from vaelab.generation import sample
from vaelab.models import VAE
from vaelab.models.guidance import guided_decode, takes_guidance
from vaelab.models.parts.base import Draw


def test_guidance_mixes_the_decoder_outputs_of_label_and_null_class():
    model = conditional_vae()
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    logits = model._mean_path(z, y)
    null = model.condition.null_labels(5)
    uncond = model.likelihood.mean(model._decode(z, null, None, Draw()).params)
    for w in (0.0, 1.0, 2.5):
        want = torch.sigmoid(model._decode(z, null, None, Draw()).params * (1 - w) + w * logits)
        torch.testing.assert_close(guided_decode(model, z, y, guidance=w), want)
    torch.testing.assert_close(guided_decode(model, z, y, guidance=0.0), uncond)  # 0: unconditional
    torch.testing.assert_close(guided_decode(model, z, y, guidance=1.0), model.decode(z, y))


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
    model = conditional_vae(likelihood)
    assert model.likelihood.guided_channels() == guided
    cond, uncond = torch.randn(2, model.likelihood.param_channels, 8, 8), torch.randn(2, 1, 1, 1)
    uncond = uncond.expand_as(cond)
    mixed = model.likelihood.guide(cond, uncond, 3.0)
    torch.testing.assert_close(mixed[:, :guided], uncond[:, :guided] + 3.0 * (cond - uncond)[:, :guided])
    torch.testing.assert_close(mixed[:, guided:], cond[:, guided:])
    images = guided_decode(model, torch.randn(3, 4), torch.tensor([0, 1, 2]), guidance=2.0)
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_guidance_replays_the_lower_layers_noise_of_a_hierarchical_decoder():
    model = conditional_vae(decoder="ladder")
    y = torch.tensor([0, 1, 2])
    z = torch.randn(3, 4)
    a = guided_decode(model, z, y, guidance=2.0, generator=torch.Generator().manual_seed(4))
    b = guided_decode(model, z, y, guidance=2.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.shape == (3, 1, 8, 8)
    assert guided_decode(model, z, y, guidance=2.0).shape == (3, 1, 8, 8)  # no generator: the global RNG
    assert torch.equal(sample(model, 3, seed=4, guidance=2.0), sample(model, 3, seed=4, guidance=2.0))


def test_guidance_is_refused_clearly_where_it_is_not_defined():
    y = torch.tensor([0, 1, 2])
    with pytest.raises(UsageError, match="trained without: retrain with --set"):
        sample(conditional_vae(dropout=0.0), 3, labels=y, guidance=2.0)
    sample(
        conditional_vae(dropout=0.0), 3, labels=y, guidance=1.0
    )  # guidance 1 is plain sampling, for every model
    with pytest.raises(UsageError, match="unconditional"):
        sample(tiny_vae(), 3, guidance=1.5)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="finite number >= 0"):
            sample(conditional_vae(), 3, guidance=bad)
    pixelcnn = conditional_vae(
        {"name": "pixelcnn", "components": 2, "hidden": 8, "kernel": 3, "coupled": False}
    )
    assert not takes_guidance(pixelcnn)
    with pytest.raises(UsageError, match="not defined for the 'pixelcnn' likelihood"):
        sample(pixelcnn, 3, labels=y, guidance=2.0)


def test_a_guided_model_round_trips_and_samples_the_same(tmp_path):
    model = conditional_vae()
    model.save_pretrained(tmp_path)
    again = VAE.from_pretrained(tmp_path)
    assert takes_guidance(again) and again.config.condition.label_dropout == 0.5
    torch.testing.assert_close(sample(model, 6, seed=3, guidance=2.0), sample(again, 6, seed=3, guidance=2.0))
