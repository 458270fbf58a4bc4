import math

import torch

from vaelab.models.config import BernoulliLikelihoodConfig, GaussianLikelihoodConfig
from vaelab.models.parts.likelihoods import BernoulliLikelihood, GaussianLikelihood


def test_bernoulli_log_prob_closed_form():
    lik = BernoulliLikelihood(BernoulliLikelihoodConfig())
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum()
    got = lik(logits).log_prob(x)
    assert got.shape == (1,)
    torch.testing.assert_close(got[0], expected)
    torch.testing.assert_close(lik.mean(logits), p)


def test_bernoulli_accepts_grey_levels_and_extreme_logits():
    lik = BernoulliLikelihood(BernoulliLikelihoodConfig())
    x = torch.full((2, 1, 3, 3), 0.3)
    lp = lik(torch.full((2, 1, 3, 3), 80.0)).log_prob(x)
    assert torch.isfinite(lp).all()  # logits keep log(1 - sigmoid(80)) finite


def test_gaussian_fixed_closed_form():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(sigma=0.5))
    mean, x = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.5, -0.5], [1.0, 0.0]]]])
    expected = (-0.5 * (x / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum()
    torch.testing.assert_close(lik(mean).log_prob(x)[0], expected)
    assert lik.params_per_channel == 1


def test_gaussian_learned_uses_two_channels_and_floor():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="learned", min_log_scale=-3.0))
    assert lik.params_per_channel == 2
    params = torch.cat([torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), -50.0)], dim=1)
    dist = lik(params)
    assert dist.event_shape == (3, 2, 2)
    torch.testing.assert_close(dist.base_dist.scale, torch.full((1, 3, 2, 2), math.exp(-3.0)))
