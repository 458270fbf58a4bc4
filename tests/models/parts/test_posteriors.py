import math

import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaelab.models.config import GaussianPosteriorConfig, ModelConfig
from vaelab.models.parts.posteriors import GaussianPosterior
from vaelab.models.vae import VAE


def test_posterior_shapes_and_clamp():
    post = GaussianPosterior(GaussianPosteriorConfig(), latent_dim=3)
    assert post.param_dim == 6
    params = torch.tensor([[0.0, 1.0, 2.0, 1000.0, -1000.0, 0.0]])
    q = post(params)
    assert q.batch_shape == (1,) and q.event_shape == (3,)
    # log-variance clamped to [-30, 20]: the std stays finite and positive
    std = q.base_dist.scale
    assert torch.isfinite(std).all() and (std > 0).all()
    assert torch.allclose(std[0, 0], torch.exp(torch.tensor(0.5 * 20.0)))


def test_kl_matches_closed_form():
    """KL(N(mu, s^2) || N(0, 1)) = 0.5 * sum(mu^2 + s^2 - 1 - log s^2), per image."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 4, 4), latent_dim=5))
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = model.posterior(torch.cat([mu, logvar], dim=1))
    kl = model.kl(q, q.rsample())
    expected = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    assert kl.shape == (7,)
    torch.testing.assert_close(kl, expected, rtol=1e-5, atol=1e-5)
    ref = kl_divergence(
        Independent(Normal(mu, (0.5 * logvar).exp()), 1),
        Independent(Normal(torch.zeros(5), torch.ones(5)), 1),
    )
    torch.testing.assert_close(kl, ref)


def test_kl_is_zero_at_prior():
    model = VAE(ModelConfig(image_shape=(1, 4, 4), latent_dim=4))
    q = model.posterior(torch.zeros(2, 8))
    assert torch.allclose(model.kl(q, q.rsample()), torch.zeros(2), atol=1e-7)


def test_reparameterisation_gradients_reach_mean_and_logvar():
    post = GaussianPosterior(GaussianPosteriorConfig(), latent_dim=4)
    params = torch.randn(3, 8, requires_grad=True)
    z = post(params).rsample()
    (z**2).sum().backward()
    assert params.grad is not None
    assert (params.grad[:, :4].abs() > 0).all() and (params.grad[:, 4:].abs() > 0).all()


def test_rsample_statistics():
    post = GaussianPosterior(GaussianPosteriorConfig(), latent_dim=1)
    params = torch.tensor([[2.0, math.log(0.25)]])  # mean 2, variance 0.25
    torch.manual_seed(0)
    z = post(params).rsample((20000,))
    assert abs(z.mean().item() - 2.0) < 0.02 and abs(z.std().item() - 0.5) < 0.02
