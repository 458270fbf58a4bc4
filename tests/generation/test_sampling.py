import pytest
import torch
from tests.helpers import mlp_vae

from vaelab.generation import sample
from vaelab.models import VAE


def flat_model() -> VAE:
    torch.manual_seed(0)
    return mlp_vae(6, 3, 8)


def test_temperature_zero_decodes_the_prior_mean_whatever_the_seed():
    model = flat_model()
    a, b = sample(model, 4, temperature=0.0, seed=1), sample(model, 4, temperature=0.0, seed=2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, model.decode(torch.zeros(4, 3)), rtol=0, atol=0)


def test_temperature_scales_the_latent_spread():
    model = flat_model()
    hot, cold = sample(model, 8, temperature=1.0, seed=3), sample(model, 8, temperature=0.3, seed=3)
    assert not torch.equal(hot, cold)
    torch.testing.assert_close(sample(model, 8, temperature=0.3, seed=3), cold, rtol=0, atol=0)
    # the same noise, scaled: cold latents are 0.3 x hot latents
    z_hot = model.prior.sample(8, 1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(cold, model.decode(0.3 * z_hot))


def test_per_layer_temperatures_are_checked():
    model = flat_model()
    assert sample(model, 2, temperature=[0.5], seed=0).shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match="1 stochastic layers"):
        sample(model, 2, temperature=[0.5, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        sample(model, 2, temperature=-0.1)


def test_cli_temperature_option_reads_one_or_a_list():
    import argparse

    from vaelab.cli.generate import temperatures

    assert temperatures("0.7") == [0.7] and temperatures("1,0.8,0") == [1.0, 0.8, 0.0]
    for bad in ("hot", "-1", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            temperatures(bad)
