"""Contract test: every registered encoder/decoder/likelihood runs at tiny size and round-trips."""

import itertools
import json

import pytest
import torch

from vaelab.models import VAE, ModelConfig, ModelLoadError
from vaelab.models.registry import DECODERS, ENCODERS, LIKELIHOODS

LIKELIHOOD_CONFIGS = {
    "bernoulli": [{"name": "bernoulli"}],
    "gaussian": [{"name": "gaussian"}, {"name": "gaussian", "variance": "learned"}],
}
VARIANTS = [
    (enc, dec, lik)
    for enc, dec in itertools.product(ENCODERS, DECODERS)
    for name in LIKELIHOODS
    for lik in LIKELIHOOD_CONFIGS[name]
]


def tiny(enc: str, dec: str, lik: dict, shape=(1, 12, 12)) -> VAE:
    parts = {"mlp": {"hidden_dims": [16]}, "conv": {"channels": [4, 8], "hidden_dim": 16}}
    cfg = ModelConfig.model_validate(
        {
            "image_shape": shape,
            "latent_dim": 3,
            "encoder": {"name": enc, **parts[enc]},
            "decoder": {
                "name": dec,
                **({"channels": [8, 4], "hidden_dim": 16} if dec == "conv" else {"hidden_dims": [16]}),
            },
            "likelihood": lik,
        }
    )
    return VAE(cfg)


@pytest.mark.parametrize(("enc", "dec", "lik"), VARIANTS)
@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 7, 9)])
def test_contract(enc, dec, lik, shape, tmp_path):
    torch.manual_seed(0)
    model = tiny(enc, dec, lik, shape)
    x = torch.rand(5, *shape)
    out = model(x)
    assert out.z.shape == (5, 3) and out.log_px_z.shape == (5,) and out.kl.shape == (5,)
    assert out.elbo.shape == (5,) and torch.isfinite(out.elbo).all()
    assert (out.kl >= 0).all()
    (-out.elbo.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.sample(4).shape == (4, *shape)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    assert model.encode(x).mean.shape == (5, 3)
    assert model.decode(torch.zeros(2, 3)).shape == (2, *shape)

    # save/load round trip: identical outputs, and a fresh process-independent config
    model.save_pretrained(tmp_path / "m")
    loaded = VAE.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    z = torch.randn(6, 3)
    torch.testing.assert_close(loaded.decode(z), model.decode(z), rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode(x).mean, model.encode(x).mean, rtol=0, atol=0)


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
