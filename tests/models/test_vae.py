"""Contract test: every registered encoder/decoder/prior/likelihood runs at tiny size and round-trips."""

import itertools
import json

import pytest
import torch

from vaelab.models import VAE, ModelConfig, ModelLoadError
from vaelab.models.registry import DECODERS, ENCODERS, LIKELIHOODS, PRIORS

LIKELIHOOD_CONFIGS = {
    "bernoulli": [{"name": "bernoulli"}],
    "gaussian": [
        {"name": "gaussian"},
        {"name": "gaussian", "variance": "learned"},
        {"name": "gaussian", "variance": "shared"},
    ],
    # The RGB-coupled mixture needs 3 channels: tests/models/parts/test_colour_likelihoods.py runs it.
    "logistic_mixture": [{"name": "logistic_mixture", "components": 2}],
    "discretized_gaussian": [{"name": "discretized_gaussian"}],
}
PRIOR_CONFIGS = {"standard_normal": {"name": "standard_normal"}, "vamp": {"name": "vamp", "components": 3}}
ENCODER_CONFIGS = {
    "mlp": {"hidden_dims": [16]},
    "conv": {"channels": [4, 8], "hidden_dim": 16},
    "resnet": {"channels": [4, 8]},
}
DECODER_CONFIGS = {
    "mlp": {"hidden_dims": [16]},
    "conv": {"channels": [8, 4], "hidden_dim": 16},
    "resnet": {"channels": [8, 4]},
    "ladder": {"channels": [8, 4], "latent_layers": [1, 1], "latent_channels": 2},
}
# A hierarchical decoder reads the encoder's multi-scale features: only the resnet encoder has them.
PAIRS = [(e, d) for e, d in itertools.product(ENCODERS, DECODERS) if d != "ladder" or e == "resnet"]
# Every encoder/decoder pair with the default prior and likelihood; every prior and likelihood with a
# flat and a hierarchical pair (the full product would add minutes and no new code paths).
VARIANTS = [
    (e, d, "standard_normal", {"name": "bernoulli"}, shape)
    for e, d in PAIRS
    for shape in ((1, 12, 12), (3, 8, 6))
] + [
    (e, d, prior, lik, (1, 12, 12))
    for e, d in (("mlp", "mlp"), ("resnet", "ladder"))
    for prior in PRIORS
    for name in LIKELIHOODS
    for lik in LIKELIHOOD_CONFIGS[name]
    if (prior, name) != ("standard_normal", "bernoulli")
]


def tiny(enc: str, dec: str, lik: dict, shape=(1, 12, 12), prior: str = "standard_normal") -> VAE:
    cfg = ModelConfig.model_validate(
        {
            "image_shape": shape,
            "latent_dim": 3,
            "encoder": {"name": enc, **ENCODER_CONFIGS[enc]},
            "decoder": {"name": dec, **DECODER_CONFIGS[dec]},
            "prior": PRIOR_CONFIGS[prior],
            "likelihood": lik,
        }
    )
    return VAE(cfg)


def test_registries_are_all_covered():
    assert set(LIKELIHOOD_CONFIGS) == set(LIKELIHOODS) and set(PRIOR_CONFIGS) == set(PRIORS)
    assert set(ENCODER_CONFIGS) == set(ENCODERS) and set(DECODER_CONFIGS) == set(DECODERS)


@pytest.mark.parametrize(("enc", "dec", "prior", "lik", "shape"), VARIANTS)
def test_contract(enc, dec, prior, lik, shape, tmp_path):
    torch.manual_seed(0)
    model = tiny(enc, dec, lik, shape, prior)
    x = torch.rand(5, *shape)
    if lik["name"] == "logistic_mixture":
        x = torch.round(x * 255) / 255
    out = model(x)
    layers = model.num_stochastic_layers
    assert layers == (3 if dec == "ladder" else 1)
    assert out.z.shape == (5, 3) and out.log_px_z.shape == (5,) and out.kl.shape == (5,)
    assert out.kl_layers.shape == (5, layers)
    torch.testing.assert_close(out.kl_layers.sum(1), out.kl)
    assert out.elbo.shape == (5,) and torch.isfinite(out.elbo).all()
    if prior == "standard_normal":  # analytic KLs; a learned prior's KL is a one-sample estimate
        assert (out.kl_layers >= 0).all()
    (-out.elbo.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.sample(4).shape == (4, *shape)
    assert model.sample(2, [0.5] * layers).shape == (2, *shape)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    assert model.encode(x).mean.shape == (5, 3)
    assert model.decode(torch.zeros(2, 3)).shape == (2, *shape)
    log_w = model.log_importance_weights(x, 4)
    assert log_w.shape == (4, 5) and torch.isfinite(log_w).all()

    # save/load round trip: identical outputs, and a fresh process-independent config
    model.save_pretrained(tmp_path / "m")
    loaded = VAE.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    z = torch.randn(6, 3)
    torch.testing.assert_close(loaded.decode(z), model.decode(z), rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode(x).mean, model.encode(x).mean, rtol=0, atol=0)
    torch.manual_seed(3)
    a = model(x).elbo
    torch.manual_seed(3)
    torch.testing.assert_close(loaded(x).elbo, a, rtol=0, atol=0)  # seeded repeatability after a reload


def test_hierarchical_decoder_needs_a_feature_encoder():
    with pytest.raises(ValueError, match=r"hierarchical.*'resnet'"):
        tiny("conv", "ladder", {"name": "bernoulli"})


def test_resnet_rejects_sides_that_do_not_halve():
    with pytest.raises(ValueError, match="cannot be halved 1 times exactly"):
        tiny("resnet", "mlp", {"name": "bernoulli"}, shape=(1, 7, 8))


def test_seeded_repeatability():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny("mlp", "mlp", {"name": "bernoulli"})
        torch.manual_seed(7)
        outs.append(model(torch.rand(4, 1, 12, 12)).elbo)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_from_pretrained_accepts_run_dir(tmp_path):
    model = tiny("mlp", "mlp", {"name": "bernoulli"})
    model.save_pretrained(tmp_path / "run" / "model")
    assert VAE.from_pretrained(tmp_path / "run").config == model.config


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        VAE.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds no saved model"):
        VAE.from_pretrained(tmp_path / "empty")
    model = tiny("mlp", "mlp", {"name": "bernoulli"})
    d = model.save_pretrained(tmp_path / "m")
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ModelLoadError, match="could not be read as safetensors"):
        VAE.from_pretrained(d)
    # a config whose architecture does not match the weights
    model.save_pretrained(d)
    meta = json.loads((d / "config.json").read_text())
    meta["model"]["latent_dim"] = 5
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="does not match its config"):
        VAE.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a valid vaelab model config"):
        VAE.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({"format": "vaelab-vae", "model": {"latent_dim": -1}}))
    with pytest.raises(ModelLoadError, match="latent_dim"):
        VAE.from_pretrained(d)


def test_missing_image_shape_is_an_error():
    with pytest.raises(ValueError, match="image_shape"):
        VAE(ModelConfig())


def test_altered_weights_are_detected(tmp_path):
    model = tiny("mlp", "mlp", {"name": "bernoulli"})
    d = model.save_pretrained(tmp_path / "m")
    weights = d / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the last tensor's bytes: still valid safetensors
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="altered or corrupted"):
        VAE.from_pretrained(d)


def test_kl_groups_are_the_per_dimension_kl_and_add_up_to_the_total():
    torch.manual_seed(0)
    model = tiny("mlp", "mlp", {"name": "bernoulli"})
    out = model(torch.rand(5, 1, 12, 12))
    assert out.kl_groups.shape == (5, 3)
    torch.testing.assert_close(out.kl_groups.sum(-1), out.kl)
    posterior, prior = out.posterior, model.prior()
    expected = torch.distributions.kl_divergence(posterior, prior)
    torch.testing.assert_close(out.kl, expected)
