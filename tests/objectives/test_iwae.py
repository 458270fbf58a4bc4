import math

import pytest
import torch
from tests.evaluation.helpers import analytic_elbo, linear_gaussian_vae, sample_data

from vaelab.config import load_config
from vaelab.objectives import IWAE, IWAEConfig, build_objective


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model, w, b = linear_gaussian_vae(sigma=0.5)
    with torch.no_grad():  # an imperfect encoder, so the ELBO is strictly below log p(x)
        model.encoder.net[0].bias[:2] += 0.3
    x = sample_data(w, b, 0.5, 8)
    objective = IWAE(IWAEConfig(iw_samples=1))
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = torch.stack([-objective(model(x, **objective.forward_kwargs)).loss for _ in range(4000)])
    exact = analytic_elbo(model, x, w, b, 0.5).mean()
    se = bounds.std() / math.sqrt(len(bounds))
    assert abs(bounds.mean().double() - exact) < 4 * se


def test_iwae_bound_rises_with_k_and_keeps_the_elbo_terms():
    model, w, b = linear_gaussian_vae(sigma=0.5)
    with torch.no_grad():
        model.encoder.net[0].bias[:2] += 0.3
    x = sample_data(w, b, 0.5, 8)
    torch.manual_seed(0)
    means = {}
    for k in (1, 10):
        obj = build_objective(IWAEConfig(iw_samples=k))
        with torch.no_grad():
            means[k] = torch.stack([-obj(model(x, iw_samples=k)).loss for _ in range(300)]).mean()
    assert means[10] > means[1] + 0.01
    out = model(x, iw_samples=5)
    terms = IWAE(IWAEConfig(iw_samples=5))(out)
    assert out.log_weights.shape == (5, 8) and terms.elbo.shape == (8,)
    torch.testing.assert_close(terms.elbo, terms.log_px_z - terms.kl)


def test_iwae_without_log_weights_is_an_error():
    model, w, b = linear_gaussian_vae()
    with pytest.raises(ValueError, match="iw_samples"):
        IWAE(IWAEConfig())(model(sample_data(w, b, 0.5, 2)))


def test_iwae_is_a_config_choice_and_trains(tiny_config, tmp_path):
    from vaelab.training import train

    config = tiny_config(1, "objective.name=iwae", "objective.iw_samples=3")
    assert config.objective.iw_samples == 3
    result = train(config, tmp_path / "run")
    assert math.isfinite(result.history[-1]["val_elbo"])
    with pytest.raises(ValueError, match="iw_samples"):
        load_config(overrides=["objective.name=iwae", "objective.iw_samples=0"])
