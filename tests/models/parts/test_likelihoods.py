import math

import pytest
import torch
from torch.distributions import Normal

from vaelab.models.parts.likelihoods import (
    BernoulliLikelihood,
    BernoulliLikelihoodConfig,
    GaussianLikelihood,
    GaussianLikelihoodConfig,
)


def test_bernoulli_log_prob_closed_form():
    lik = BernoulliLikelihood(BernoulliLikelihoodConfig(), 1)
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum()
    got = lik(logits).log_prob(x)
    assert got.shape == (1,)
    torch.testing.assert_close(got[0], expected)
    torch.testing.assert_close(lik.mean(logits), p)


def test_bernoulli_accepts_grey_levels_and_extreme_logits():
    lik = BernoulliLikelihood(BernoulliLikelihoodConfig(), 1)
    x = torch.full((2, 1, 3, 3), 0.3)
    lp = lik(torch.full((2, 1, 3, 3), 80.0)).log_prob(x)
    assert torch.isfinite(lp).all()  # logits keep log(1 - sigmoid(80)) finite


def test_gaussian_fixed_closed_form():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(sigma=0.5), 1)
    mean, x = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.5, -0.5], [1.0, 0.0]]]])
    expected = (-0.5 * (x / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum()
    torch.testing.assert_close(lik(mean).log_prob(x)[0], expected)
    assert lik.params_per_channel == 1 and lik.param_channels == 1


def test_gaussian_learned_uses_two_channels_and_floor():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="learned", min_log_scale=-3.0), 3)
    assert lik.params_per_channel == 2 and lik.param_channels == 6
    params = torch.cat([torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), -50.0)], dim=1)
    dist = lik(params)
    assert dist.event_shape == (3, 2, 2)
    torch.testing.assert_close(dist.base_dist.scale, torch.full((1, 3, 2, 2), math.exp(-3.0)))


def test_bernoulli_log_prob_matches_torch_over_every_logit_range():
    from torch.distributions import Bernoulli

    from vaelab.models.parts.likelihoods import FastBernoulli, log1p_exp_neg

    # Logits from 0 to +-200 (a trained decoder's background pixels sit at -20 to -100), binary and
    # grey targets; fp64 reference from torch's own Bernoulli.
    logits = torch.cat(
        [torch.linspace(-200, 200, 40001), torch.tensor([0.0, 14.99, 15.0, 15.01, 80.0, 90.0])]
    )
    for y in (torch.zeros_like(logits), torch.ones_like(logits), torch.full_like(logits, 0.3)):
        ours = FastBernoulli(logits=logits, validate_args=False).log_prob(y)
        ref = Bernoulli(logits=logits.double(), validate_args=False).log_prob(y.double())
        torch.testing.assert_close(ours.double(), ref, atol=1e-6, rtol=1e-6)
    a = torch.linspace(0, 120, 1201, dtype=torch.float64)
    torch.testing.assert_close(log1p_exp_neg(a), torch.log1p(torch.exp(-a)), atol=1e-13, rtol=0)
    # Gradients agree too (training uses this log-density).
    l1 = torch.linspace(-40, 40, 801, requires_grad=True)
    l2 = l1.detach().clone().requires_grad_(True)
    y = (torch.rand(801, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    FastBernoulli(logits=l1, validate_args=False).log_prob(y).sum().backward()
    Bernoulli(logits=l2, validate_args=False).log_prob(y).sum().backward()
    torch.testing.assert_close(l1.grad, l2.grad, atol=1e-6, rtol=1e-5)


def test_gaussian_old_configs_keep_their_floor_and_shared_gets_half_a_level():
    assert GaussianLikelihoodConfig.model_validate({"variance": "learned"}).min_log_scale == -7.0
    shared = GaussianLikelihoodConfig.model_validate({"variance": "shared"})
    assert math.exp(shared.min_log_scale) == pytest.approx(1 / 510, rel=0.01)
    assert GaussianLikelihoodConfig(variance="shared", min_log_scale=-5.0).min_log_scale == -5.0
    with pytest.raises(ValueError, match="above the floor"):
        GaussianLikelihoodConfig(variance="shared", sigma=1e-3)


def test_gaussian_shared_scale_is_a_parameter_per_channel_starting_at_sigma():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="shared", sigma=0.2), 3)
    assert lik.params_per_channel == 1 and lik.param_channels == 3
    assert [name for name, _ in lik.named_parameters()] == ["log_scale_raw"]
    torch.testing.assert_close(lik.log_scale().exp(), torch.full((3, 1, 1), 0.2))
    loc = torch.rand(2, 3, 4, 4)
    x = torch.rand(2, 3, 4, 4)
    expected = Normal(loc, 0.2).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lik(loc).log_prob(x), expected)
    torch.testing.assert_close(lik.mean(loc), loc)
    assert lik(loc).sample().shape == (2, 3, 4, 4)


def test_gaussian_shared_scale_cannot_go_below_its_floor():
    """Perfect reconstructions reward an ever smaller scale: the optimiser drives the parameter down as
    far as it likes, the scale stops at the floor, and the gradient stays finite and alive."""
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="shared"), 3)
    floor = math.exp(lik.config.min_log_scale)
    x = torch.round(torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 255) / 255
    opt = torch.optim.Adam(lik.parameters(), lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        (-lik(x).log_prob(x).mean()).backward()
        assert torch.isfinite(lik.log_scale_raw.grad).all()
        opt.step()
        assert (lik.log_scale().exp() >= floor).all()
    assert lik.log_scale_raw.min() < lik.config.min_log_scale - 5  # pushed far below...
    torch.testing.assert_close(lik.log_scale().exp(), torch.full((3, 1, 1), floor), rtol=1e-2, atol=0)
    # ...yet a worse fit still reaches it: the smooth floor never has a zero gradient
    opt.zero_grad()
    (-lik(x + 0.1).log_prob(x).mean()).backward()
    assert (lik.log_scale_raw.grad < 0).all()


def test_gaussian_shared_gradients_are_finite_at_extremes():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="shared"), 3)
    with torch.no_grad():
        lik.log_scale_raw.fill_(-1e4)
    loc = torch.tensor([-1e3, 0.0, 1.0, 1e3]).view(1, 1, 1, 4).expand(2, 3, 1, 4).clone().requires_grad_(True)
    x = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 4)
    lp = lik(loc).log_prob(x)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(lik.log_scale_raw.grad).all()


def test_gaussian_raw_mean_is_the_unclipped_location_and_mean_its_clip():
    lik = GaussianLikelihood(GaussianLikelihoodConfig(variance="learned"), 1)
    params = torch.tensor([[[[-3.0, 0.4]], [[0.0, 0.0]]]])  # locations, then log-scales
    torch.testing.assert_close(lik.raw_mean(params), torch.tensor([[[[-3.0, 0.4]]]]))
    torch.testing.assert_close(lik.mean(params), torch.tensor([[[[0.0, 0.4]]]]))
    bern = BernoulliLikelihood(BernoulliLikelihoodConfig(), 1)  # bounded: its raw mean is its mean
    torch.testing.assert_close(bern.raw_mean(params[:, :1]), bern.mean(params[:, :1]))
