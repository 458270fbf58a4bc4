import math

import pytest
import torch
from scipy.special import log_ndtr as scipy_log_ndtr
from scipy.special import ndtr

from vaelab.models.parts.discretized import (
    DiscretizedGaussianLikelihood,
    DiscretizedGaussianLikelihoodConfig,
    log_ndtr,
    log_normal_bin,
)

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def likelihood(**kw) -> DiscretizedGaussianLikelihood:
    return DiscretizedGaussianLikelihood(DiscretizedGaussianLikelihoodConfig(**kw), 3)


def params_for(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """(1, 2C, H, W) decoder output from (C, H, W) means and log-scales."""
    return torch.cat([loc, log_scale]).unsqueeze(0)


# (C=3, H=1, W=4) pixels: means inside, at the edges of and outside [0, 1]; scales from the floor (a
# quarter level) through a level to wider than the pixel range.
LOC = torch.tensor(
    [[0.5, 0.0, 1.0, 130.4 / 255], [-0.3, 1.4, 0.25, 3.7 / 255], [0.77, 0.5, 254.6 / 255, 0.1]]
)
LOG_SCALE = torch.tensor([[-6.93, -6.93, -6.93, -6.0], [-3.0, -2.0, -5.5, -6.93], [0.5, 2.0, -6.93, -4.0]])


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_probabilities_over_256_levels_sum_to_one(dtype, tol):
    lik = likelihood()
    params = params_for(LOC.view(3, 1, 4), LOG_SCALE.view(3, 1, 4)).to(dtype)
    dist = lik(params.expand(256, -1, -1, -1))
    values = LEVELS.to(dtype).view(256, 1, 1, 1).expand(256, 3, 1, 4)
    log_p = dist.log_prob_per_pixel(values)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    total = log_p.exp().sum(0)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=tol)


def test_bins_match_the_gaussian_cdf():
    """Each level's probability is Phi(upper) - Phi(lower) of its bin (edge bins to -inf / +inf),
    against scipy in float64, wherever that difference is representable."""
    lik = likelihood()
    params = params_for(LOC.view(3, 1, 4), LOG_SCALE.view(3, 1, 4)).double()
    log_p = lik(params.expand(256, -1, -1, -1)).log_prob_per_pixel(
        LEVELS.view(256, 1, 1, 1).expand(256, 3, 1, 4)
    )
    scale = LOG_SCALE.double().exp().view(1, 3, 1, 4)
    loc = LOC.double().view(1, 3, 1, 4)
    k = torch.arange(256, dtype=torch.float64).view(256, 1, 1, 1)
    upper = torch.where(k == 255, torch.inf, ((k + 0.5) / 255 - loc) / scale)
    lower = torch.where(k == 0, -torch.inf, ((k - 0.5) / 255 - loc) / scale)
    # mirror bins right of the mean so the difference is of small numbers
    right = lower > 0

    def cdf(v: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(ndtr(v.numpy()))

    mass = torch.where(right, cdf(-lower) - cdf(-upper), cdf(upper) - cdf(lower))
    ok = mass > 1e-200
    assert ok.sum() > 400
    torch.testing.assert_close(log_p[ok], mass[ok].log(), rtol=1e-9, atol=1e-12)


def test_one_level_by_hand():
    lik = likelihood()
    loc, sigma = 0.5, 2 / 255
    params = torch.tensor([loc, math.log(sigma)], dtype=torch.float64).view(1, 2, 1, 1)
    x = torch.tensor([130 / 255], dtype=torch.float64).view(1, 1, 1, 1)

    def cdf(v: float) -> float:
        return 0.5 * math.erfc(-(v - loc) / (sigma * math.sqrt(2)))

    expected = math.log(cdf(130.5 / 255) - cdf(129.5 / 255))
    lik1 = DiscretizedGaussianLikelihood(DiscretizedGaussianLikelihoodConfig(), 1)
    assert lik1(params).log_prob(x).item() == pytest.approx(expected, rel=1e-12)
    assert lik.param_channels == 6 and lik.discrete


def test_log_ndtr_and_its_gradient_far_in_the_tail():
    x = torch.tensor([-1e5, -1e4, -3e3, -1e3, -150.0, -25.0, -20.0, -19.5, -5.0, 0.0, 3.0, 40.0])
    for dtype in (torch.float32, torch.float64):
        xd = x.clone().to(dtype).requires_grad_(True)
        y = log_ndtr(xd)
        ref = torch.from_numpy(scipy_log_ndtr(x.double().numpy()))
        torch.testing.assert_close(y.double(), ref, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-7)
        y.sum().backward()
        # d/dx log Phi(x) = phi(x) / Phi(x) = exp(log phi(x) - log Phi(x)); ~ -x in the far tail
        log_phi = -0.5 * x.double() ** 2 - 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(xd.grad.double(), (log_phi - ref).exp(), rtol=1e-4, atol=1e-7)


def test_scale_floor_and_gradients_at_extremes():
    lik = likelihood()
    # Levels 0, 255 and interior; means far outside, on and off the level; scales far below the floor
    # and above the cap.
    loc = torch.tensor([[-5.0, 0.0, 1.0, 6.0], [0.5, 0.5 + 0.5 / 255, 128 / 255, 1e3]]).view(2, 1, 4)
    log_scale = torch.tensor([[-50.0, -6.93, -6.93, -50.0], [-50.0, 40.0, -7.5, -6.93]]).view(2, 1, 4)
    params = torch.cat([loc, log_scale]).unsqueeze(0).expand(3, -1, -1, -1).clone().requires_grad_(True)
    x = torch.tensor([0.0, 255.0, 128.0]).view(3, 1, 1, 1).expand(3, 2, 1, 4) / 255
    lik2 = DiscretizedGaussianLikelihood(DiscretizedGaussianLikelihoodConfig(), 2)
    dist = lik2(params)
    assert dist.log_scale.min().item() == pytest.approx(-6.93)
    lp = dist.log_prob(x)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()
    assert lik.config.min_log_scale == pytest.approx(math.log(1 / 1020), abs=0.01)


def test_samples_are_levels_and_equal_the_rounded_mean_when_sharp():
    torch.manual_seed(0)
    lik = likelihood()
    params = torch.randn(4, 6, 5, 5) * 0.5 + 0.5
    s = lik(params).sample((2,))
    assert s.shape == (2, 4, 3, 5, 5) and s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 255, torch.round(s * 255))
    # Very small scale: each draw is its mean, rounded to a level (clamped to [0, 1]).
    sharp = likelihood(min_log_scale=-20.0)
    loc = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 1.2 - 0.1
    params = torch.cat([loc, torch.full_like(loc, -20.0)], 1)
    expected = torch.round(loc.clamp(0, 1) * 255) / 255
    torch.testing.assert_close(sharp(params).sample(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(sharp.mean(params), loc.clamp(0, 1))


def test_sample_frequencies_match_the_probabilities():
    torch.manual_seed(1)
    lik = DiscretizedGaussianLikelihood(DiscretizedGaussianLikelihoodConfig(), 1)
    params = torch.tensor([3.0 / 255, math.log(2.5 / 255)], dtype=torch.float64).view(1, 2, 1, 1)
    dist = lik(params)
    n = 40000
    counts = torch.bincount((dist.sample((n,)).view(n) * 255).round().long(), minlength=256).double()
    probs = dist.log_prob_per_pixel(LEVELS.view(256, 1, 1, 1)).exp().view(256)
    assert probs[0] > 0.1  # the edge bin holds its tail
    se = (probs * (1 - probs) / n).sqrt()
    assert ((counts / n - probs).abs() <= 5 * se + 1e-6).all()


def test_a_bin_far_narrower_than_the_scale_is_the_density_times_its_width():
    """Edges equal in float32 (the CDF difference is exactly 0): the midpoint rule, finite gradients."""
    centre = torch.tensor([0.0, -3.0, 2.5], requires_grad=True)
    width = torch.full((3,), 1e-9, requires_grad=True)
    never = torch.zeros(3, dtype=torch.bool)
    lp = log_normal_bin(centre - width / 2, centre + width / 2, centre, width, never, never)
    expected = -0.5 * centre.detach() ** 2 - 0.5 * math.log(2 * math.pi) + math.log(1e-9)
    torch.testing.assert_close(lp.detach(), expected)
    lp.sum().backward()
    assert torch.isfinite(centre.grad).all() and torch.isfinite(width.grad).all()


def test_raw_mean_is_the_unclipped_location_and_mean_its_clip():
    lik = likelihood()
    params = torch.cat([torch.linspace(-2, 3, 12).reshape(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)], dim=1)
    torch.testing.assert_close(lik.raw_mean(params), params[:, :3])
    torch.testing.assert_close(lik.mean(params), params[:, :3].clamp(0, 1))
