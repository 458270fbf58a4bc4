"""beta-TCVAE: its minibatch estimate of the total correlation against a Gaussian with a known TC."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.models import VAE
from vaelab.models.config import ModelConfig
from vaelab.objectives import TCVAEConfig, build_objective
from vaelab.objectives.tcvae import log_qz_terms

COV = torch.tensor([[1.0, 0.7, 0.4], [0.7, 1.0, 0.5], [0.4, 0.5, 1.0]], dtype=torch.float64)
# TC of N(0, S): KL(N(0, S) || prod_j N(0, S_jj)) = (sum_j log S_jj - log det S) / 2.
TRUE_TC = float(0.5 * (torch.log(torch.diag(COV)).sum() - torch.logdet(COV)))


def _batch(m: int, s: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posteriors N(mu_j, s^2 I) with mu_j ~ N(0, S - s^2 I): their aggregate q(z) is exactly N(0, S)."""
    gen = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(COV - s * s * torch.eye(3, dtype=torch.float64))
    mu = torch.randn(m, 3, generator=gen, dtype=torch.float64) @ chol.T
    scale = torch.full_like(mu, s)
    return mu + scale * torch.randn(m, 3, generator=gen, dtype=torch.float64), mu, scale


def test_stratified_estimate_matches_the_known_total_correlation():
    z, mu, scale = _batch(2000)
    log_qz, log_prod = log_qz_terms(z, mu, scale, dataset_size=10**9, estimator="mss")
    assert float((log_qz - log_prod).mean()) == pytest.approx(TRUE_TC, abs=0.07)


def test_weighted_estimate_is_the_known_tc_plus_its_constant():
    # MWS weighs every term 1/(N M): its TC is shifted by (D - 1) log N (see the module docstring).
    n = 10**9
    z, mu, scale = _batch(2000, seed=1)
    log_qz, log_prod = log_qz_terms(z, mu, scale, dataset_size=n, estimator="mws")
    tc = float((log_qz - log_prod).mean()) - 2 * math.log(n)
    assert tc == pytest.approx(TRUE_TC, abs=0.07)


def test_independent_latents_have_near_zero_tc():
    gen = torch.Generator().manual_seed(2)
    mu = torch.randn(2000, 3, generator=gen, dtype=torch.float64) * 0.9
    scale = torch.full_like(mu, math.sqrt(1 - 0.81))
    z = mu + scale * torch.randn(2000, 3, generator=gen, dtype=torch.float64)
    log_qz, log_prod = log_qz_terms(z, mu, scale, dataset_size=10**9, estimator="mss")
    assert abs(float((log_qz - log_prod).mean())) < 0.05


def test_terms_per_image_add_up_to_the_monte_carlo_kl():
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=3))
    objective = build_objective(TCVAEConfig(beta=4.0), dataset_size=1000)
    out = model(torch.rand(16, 1, 6, 6))
    terms = objective(out)
    for name in ("mutual_info", "total_correlation", "dimwise_kl", "elbo"):
        assert getattr(terms, name).shape == (16,)
    log_qz_x = out.posterior.log_prob(out.z)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(out.z).sum(1)
    total = terms.mutual_info + terms.total_correlation + terms.dimwise_kl
    torch.testing.assert_close(total, log_qz_x - log_pz, rtol=1e-4, atol=1e-4)
    terms.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_needs_the_dataset_size():
    with pytest.raises(ValueError, match="needs the training set's size"):
        build_objective(TCVAEConfig())


def test_trainer_gives_the_objective_the_dataset_size(tiny_config, tmp_path):
    from vaelab.training import train

    result = train(tiny_config(1, "objective.name=tcvae"), tmp_path / "run", progress=False, log=False)
    assert math.isfinite(result.history[-1]["train_loss"])
