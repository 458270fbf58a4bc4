"""The colour likelihoods inside a whole VAE on 3-channel images: build, forward, backward, sample,
save/load; and evaluation treats the discrete ones as distributions over the 256 levels."""

import pytest
import torch

from vaelab.evaluation.measure import likelihood_unit
from vaelab.models import VAE, ModelConfig

COLOUR_LIKELIHOODS = [
    {"name": "logistic_mixture", "components": 3, "coupled": True},
    {"name": "discretized_gaussian"},
    {"name": "gaussian", "variance": "shared"},
]


def colour_vae(likelihood: dict, encoder: str = "conv") -> VAE:
    parts = {
        "conv": (
            {"name": "conv", "channels": [4, 8], "hidden_dim": 16},
            {"name": "conv", "channels": [8, 4]},
        ),
        "resnet": ({"name": "resnet", "channels": [4, 8]}, {"name": "ladder", "channels": [8, 4]}),
    }[encoder]
    cfg = {"image_shape": (3, 8, 8), "latent_dim": 4, "encoder": parts[0], "decoder": parts[1]}
    if encoder == "resnet":
        cfg["decoder"] |= {"latent_layers": [1, 0], "latent_channels": 1}
    return VAE(ModelConfig.model_validate({**cfg, "likelihood": likelihood}))


@pytest.mark.parametrize("likelihood", COLOUR_LIKELIHOODS, ids=lambda d: d["name"])
@pytest.mark.parametrize("encoder", ["conv", "resnet"])
def test_vae_runs_forward_backward_and_round_trips(likelihood, encoder, tmp_path):
    torch.manual_seed(0)
    model = colour_vae(likelihood, encoder)
    x = torch.randint(0, 256, (5, 3, 8, 8)) / 255
    out = model(x)
    assert out.px_params.shape == (5, model.likelihood.param_channels, 8, 8)
    assert out.log_px_z.shape == (5,) and torch.isfinite(out.elbo).all()
    (-out.elbo.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    sample = model.sample(3)
    assert sample.shape == (3, 3, 8, 8) and sample.min() >= 0 and sample.max() <= 1
    drawn = model.px_z(torch.randn(2, 4)).sample()
    assert drawn.shape == (2, 3, 8, 8)
    if model.likelihood.discrete:
        torch.testing.assert_close(drawn * 255, torch.round(drawn * 255))
    assert torch.isfinite(model.log_importance_weights(x, 3)).all()
    model.save_pretrained(tmp_path / "m")
    again = VAE.from_pretrained(tmp_path / "m")
    assert again.config == model.config
    z = torch.randn(2, 4)
    torch.testing.assert_close(again.decode(z), model.decode(z), rtol=0, atol=0)


def test_coupled_mixture_on_grey_images_is_refused():
    cfg = {"image_shape": (1, 8, 8), "likelihood": {"name": "logistic_mixture", "coupled": True}}
    with pytest.raises(ValueError, match="coupled: false"):
        VAE(ModelConfig.model_validate(cfg))


@pytest.mark.parametrize(
    ("likelihood", "levels"),
    [
        ({"name": "logistic_mixture", "components": 2}, 1),
        ({"name": "logistic_mixture", "components": 2, "coupled": True}, 1),
        ({"name": "discretized_gaussian"}, 1),
        ({"name": "gaussian", "variance": "shared"}, 256),
        ({"name": "gaussian"}, 256),
    ],
)
def test_bits_per_dim_treats_discrete_likelihoods_as_distributions_over_levels(likelihood, levels):
    got, note = likelihood_unit(colour_vae(likelihood), binarize="none")
    assert got == levels
    assert ("256 levels" in note) == (levels == 1)
