import math

import pytest
import torch

from vaelab.models.config import LogisticMixtureLikelihoodConfig
from vaelab.models.parts.logistic import LogisticMixtureLikelihood

LEVELS = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize("components", [1, 4])
def test_probabilities_over_256_levels_sum_to_one(components):
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=components))
    gen = torch.Generator().manual_seed(components)
    # one image of 2 pixels per parameter set; log-scales from very sharp (-7: the floor) to very wide
    params = torch.randn(1, 3 * components, 1, 2, generator=gen, dtype=torch.float64) * 3
    params[:, 2 * components :] = torch.tensor([-9.0, 4.0], dtype=torch.float64)  # sharp / wide
    dist = lik(params.expand(256, -1, -1, -1))
    values = LEVELS.view(256, 1, 1, 1).expand(256, 1, 1, 2)
    log_p = dist.log_prob_per_pixel(values)  # (256, 1, 1, 2): each level for both pixels
    total = torch.logsumexp(log_p, dim=0).exp()
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-9)
    assert torch.isfinite(log_p).all()


def test_single_logistic_matches_its_cdf():
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=1))
    mean, log_scale = 0.2, math.log(0.1)
    params = torch.tensor([0.0, math.atanh(mean), log_scale], dtype=torch.float64).view(1, 3, 1, 1)
    x = torch.tensor([[[[128 / 255]]]], dtype=torch.float64)
    centre = 128 / 255 * 2 - 1

    def cdf(v: float) -> float:
        return 1 / (1 + math.exp(-(v - mean) / 0.1))

    expected = math.log(cdf(centre + 1 / 255) - cdf(centre - 1 / 255))
    assert lik(params).log_prob(x).item() == pytest.approx(expected, rel=1e-9)


def test_mean_and_samples_are_images_on_the_levels():
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=3))
    params = torch.randn(4, 9 * 2, 5, 5)  # 2 channels
    dist = lik(params)
    assert lik.mean(params).shape == (4, 2, 5, 5)
    s = dist.sample()
    assert s.shape == (4, 2, 5, 5) and s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 255, torch.round(s * 255))
    assert dist.log_prob(s).shape == (4,)
