"""Contract test: every registered encoder/decoder/prior/likelihood runs in a whole VAE at tiny size and
round-trips; saved models from before the one-VAE refactor still load and give the same numbers.

The parts come from the registries (tiny configs: tests/models/tiny.py), so a newly registered part is
in these variants without an edit here; the parts alone are tested in tests/models/parts/test_contract.py.
"""

import itertools
import json
from pathlib import Path

import pytest
import torch
from tests.models.tiny import encoder_can_feed, likelihood_channels, part, tiny_vae

from vaelab.models import VAE, ModelConfig, ModelLoadError
from vaelab.models.registry import DECODERS, ENCODERS, LIKELIHOODS, PRIORS

DATA = Path(__file__).parent / "data"
# Gaussian variances beside the default one; every other likelihood at its (tiny) defaults.
LIKELIHOOD_OPTIONS = {"gaussian": [{}, {"variance": "learned"}, {"variance": "shared"}]}
LIKELIHOOD_VARIANTS = [
    part("likelihood", name, **options)
    for name in sorted(LIKELIHOODS)
    for options in LIKELIHOOD_OPTIONS.get(name, [{}])
]
# Every encoder/decoder pair that can meet (a hierarchical decoder reads an encoder's features).
PAIRS = [(e, d) for e, d in itertools.product(sorted(ENCODERS), sorted(DECODERS)) if encoder_can_feed(e, d)]
# Every pair with the default prior and likelihood; every prior and likelihood with a flat and a
# hierarchical pair (the full product would add minutes and no new code paths).
VARIANTS = [
    (e, d, "standard_normal", {"name": "bernoulli"}, shape)
    for e, d in PAIRS
    for shape in ((1, 12, 12), (3, 8, 6))
] + [
    (e, d, prior, lik, (likelihood_channels(lik), 12, 12))
    for e, d in (("mlp", "mlp"), ("resnet", "ladder"))
    for prior in sorted(PRIORS)
    for lik in LIKELIHOOD_VARIANTS
    if (prior, lik["name"]) != ("standard_normal", "bernoulli")
]


def tiny(enc: str, dec: str, lik: dict, shape=(1, 12, 12), prior: str = "standard_normal") -> VAE:
    return tiny_vae(shape, encoder=enc, decoder=dec, prior=prior, likelihood=lik)


def test_every_registered_part_is_in_a_variant():
    used = {kind: {v[i] for v in VARIANTS} for i, kind in enumerate(("encoder", "decoder", "prior"))}
    assert used == {"encoder": set(ENCODERS), "decoder": set(DECODERS), "prior": set(PRIORS)}
    assert {v[3]["name"] for v in VARIANTS} == set(LIKELIHOODS)


@pytest.mark.parametrize(("enc", "dec", "prior", "lik", "shape"), VARIANTS)
def test_contract(enc, dec, prior, lik, shape, tmp_path):
    torch.manual_seed(0)
    model = tiny(enc, dec, lik, shape, prior)
    x = torch.round(torch.rand(5, *shape) * 255) / 255  # 8-bit levels, which every likelihood takes
    out = model(x)
    layers = model.num_stochastic_layers
    assert layers == 1 + model.decoder.num_latent_layers
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


@pytest.mark.parametrize(("enc", "dec"), [("mlp", "mlp"), ("resnet", "ladder")])
def test_one_forward_path_for_one_sample_and_for_importance_samples(enc, dec):
    """With the same seed, one importance sample is the ELBO's draw (every layer), scored the same way."""
    torch.manual_seed(0)
    model = tiny(enc, dec, {"name": "bernoulli"})
    x = (torch.rand(4, 1, 12, 12) > 0.5).float()
    torch.manual_seed(5)
    single = model(x)
    torch.manual_seed(5)
    one = model(x, iw_samples=1)
    torch.testing.assert_close(one.z, single.z, rtol=0, atol=0)
    torch.testing.assert_close(one.log_px_z, single.log_px_z, rtol=0, atol=0)
    torch.testing.assert_close(one.log_weights[0], one.log_px_z - one.kl)
    torch.manual_seed(5)
    torch.testing.assert_close(model.log_importance_weights(x, 1), one.log_weights, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["ladder_label", "conv_vamp"])
def test_models_saved_before_the_one_vae_refactor_load_and_agree(name):
    """tests/models/data holds tiny models saved by the code before the flat and hierarchical paths
    became one, with their outputs then: the weight names and the numbers must not have moved."""
    model = VAE.from_pretrained(DATA / name)
    expected = json.loads((DATA / name / "expected.json").read_text())
    x, z = torch.tensor(expected["x"]), torch.tensor(expected["z"])
    y = None if expected["labels"] is None else torch.tensor(expected["labels"])
    with torch.no_grad():
        torch.manual_seed(2)
        out = model(x, y)
        got = {
            "decode": model.decode(z, y),
            "encode_mean": model.encode(x, y).mean,
            "reconstruct": model.reconstruct(x, y),
            "log_px_z": out.log_px_z,
            "kl_layers": out.kl_layers,
        }
    for key, value in got.items():
        torch.testing.assert_close(value, torch.tensor(expected[key]), rtol=1e-5, atol=1e-5, msg=key)
