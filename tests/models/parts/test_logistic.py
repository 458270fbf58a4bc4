import math

import pytest
import torch

from vaelab.models.parts.logistic import (
    DiscretizedLogisticMixture,
    LogisticMixtureLikelihood,
    LogisticMixtureLikelihoodConfig,
)

LEVELS = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize("components", [1, 4])
def test_probabilities_over_256_levels_sum_to_one(components):
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=components), 1)
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
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=1), 1)
    mean, log_scale = 0.2, math.log(0.1)
    params = torch.tensor([0.0, math.atanh(mean), log_scale], dtype=torch.float64).view(1, 3, 1, 1)
    x = torch.tensor([[[[128 / 255]]]], dtype=torch.float64)
    centre = 128 / 255 * 2 - 1

    def cdf(v: float) -> float:
        return 1 / (1 + math.exp(-(v - mean) / 0.1))

    expected = math.log(cdf(centre + 1 / 255) - cdf(centre - 1 / 255))
    assert lik(params).log_prob(x).item() == pytest.approx(expected, rel=1e-9)


def test_mean_and_samples_are_images_on_the_levels():
    lik = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=3), 2)
    params = torch.randn(4, 9 * 2, 5, 5)  # 2 channels
    dist = lik(params)
    assert lik.mean(params).shape == (4, 2, 5, 5)
    s = dist.sample()
    assert s.shape == (4, 2, 5, 5) and s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 255, torch.round(s * 255))
    assert dist.log_prob(s).shape == (4,)


# --- coupled (RGB) mixture, PixelCNN++ sec. 2.2 ----------------------------------------------------
def coupled(components: int, **kw) -> LogisticMixtureLikelihood:
    return LogisticMixtureLikelihood(
        LogisticMixtureLikelihoodConfig(components=components, coupled=True, **kw), 3
    )


def coupled_params(components: int, seed: int, h: int = 1, w: int = 1, scale_range=(-4.0, -1.0)):
    """(1, 10M, h, w) float64 parameters: logits, means and coefficients ~ N(0, 1.5^2), log-scales uniform
    in ``scale_range``; layout logits (M) then (kind: mean / log-scale / coeff, component, channel)."""
    gen = torch.Generator().manual_seed(seed)
    m = components
    params = torch.randn(1, 10 * m, h, w, generator=gen, dtype=torch.float64) * 1.5
    lo, hi = scale_range
    log_scales = lo + (hi - lo) * torch.rand(1, 3 * m, h, w, generator=gen, dtype=torch.float64)
    params[:, 4 * m : 7 * m] = log_scales
    return params


def test_old_config_without_the_key_is_the_uncoupled_mixture():
    cfg = LogisticMixtureLikelihoodConfig.model_validate({"name": "logistic_mixture", "components": 2})
    assert cfg.coupled is False
    lik = LogisticMixtureLikelihood(cfg, 3)
    assert lik.params_per_channel == 6 and lik.param_channels == 18
    assert coupled(2).param_channels == 20  # M logits + 3M means + 3M log-scales + 3M coefficients


def test_coupled_refuses_images_that_are_not_rgb():
    for channels in (1, 2, 4):
        with pytest.raises(ValueError, match="coupled: false"):
            LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(coupled=True), channels)


def _reference_log_prob(params: torch.Tensor, x: torch.Tensor, min_log_scale: float = -7.0) -> float:
    """log P(image) by loops over pixels and components in plain float64 Python: one mixture indicator
    per pixel, G's mean shifted by alpha R, B's by beta R + gamma G (observed R, G in [-1, 1])."""
    p = params[0].tolist()
    m = len(p) // 10
    total = 0.0
    for i in range(x.shape[-2]):
        for j in range(x.shape[-1]):
            levels = [round(x[0, c, i, j].item() * 255) for c in range(3)]
            v = [2 * k / 255 - 1 for k in levels]

            def raw(kind: int, k: int, c: int, i=i, j=j) -> float:
                return p[m + kind * 3 * m + k * 3 + c][i][j]

            terms = []
            for k in range(m):
                mu = [math.tanh(raw(0, k, c)) for c in range(3)]
                a, b, g = (math.tanh(raw(2, k, c)) for c in range(3))
                centre = [mu[0], mu[1] + a * v[0], mu[2] + b * v[0] + g * v[1]]
                lp = 0.0
                for c in range(3):
                    s = math.exp(min(max(raw(1, k, c), min_log_scale), 7.0))

                    def cdf(t: float, c=c, s=s, centre=centre) -> float:
                        return 1 / (1 + math.exp(-(t - centre[c]) / s))

                    def sf(t: float, c=c, s=s, centre=centre) -> float:  # 1 - cdf, without cancelling
                        return 1 / (1 + math.exp((t - centre[c]) / s))

                    lo, hi = v[c] - 1 / 255, v[c] + 1 / 255
                    if levels[c] == 0:
                        lp += math.log(cdf(hi))
                    elif levels[c] == 255:
                        lp += math.log(sf(lo))
                    else:
                        lp += math.log(sf(lo) - sf(hi) if v[c] > centre[c] else cdf(hi) - cdf(lo))
                terms.append(p[k][i][j] + lp)
            logits = [p[k][i][j] for k in range(m)]
            norm = math.log(sum(math.exp(t) for t in logits))
            top = max(terms)
            total += top + math.log(sum(math.exp(t - top) for t in terms)) - norm
    return total


def test_coupled_log_prob_matches_a_slow_reference():
    params = coupled_params(3, seed=1, h=2, w=3)
    x = torch.tensor([[0, 17, 255], [128, 200, 3]], dtype=torch.float64)  # one level per pixel...
    x = torch.stack([x, (x * 7 + 11) % 256, 255 - x]).unsqueeze(0) / 255  # ...and R, G, B from it
    got = coupled(3)(params).log_prob(x)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_reference_log_prob(params, x), rel=1e-10, abs=1e-10)


def _rgb(r, g, b) -> torch.Tensor:
    """(N, 3, 1, 1) one-pixel images from levels (ints or (N,) level tensors)."""
    cols = [torch.as_tensor(v, dtype=torch.float64).expand(256) / 255 for v in (r, g, b)]
    return torch.stack(cols, 1).view(-1, 3, 1, 1)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_each_coupled_channel_sums_to_one_given_the_channels_before_it(dtype, tol):
    m = 4
    dist = coupled(m)(coupled_params(m, seed=2, scale_range=(-7.0, 1.0)).to(dtype))  # floor-sharp to wide
    levels = torch.arange(256)
    log_w = torch.log_softmax(dist.logits.view(m), 0)
    for r, g in ((0, 0), (0, 255), (37, 200), (128, 128), (255, 3), (255, 255)):
        # Per component: the 256 values of B after this R and G, of G after this R (B plays no part).
        comps_b = dist.component_log_probs(_rgb(r, g, levels).to(dtype))  # (256, M, 3, 1, 1)
        comps_g = dist.component_log_probs(_rgb(r, levels, 0).to(dtype))
        ones = torch.ones(m, dtype=dtype)
        torch.testing.assert_close(comps_b[:, :, 2].exp().sum(0).view(m), ones, rtol=0, atol=tol)
        torch.testing.assert_close(comps_g[:, :, 1].exp().sum(0).view(m), ones, rtol=0, atol=tol)
        # The mixture: summing P(R = r, G = g, B) over B leaves P(R = r, G = g) = sum_k w_k P_k(r) P_k(g | r).
        p_rg = torch.logsumexp(log_w + comps_b[0, :, :2].sum(1).view(m), 0).exp()
        p_sum_b = dist.log_prob(_rgb(r, g, levels).to(dtype)).exp().sum()
        assert p_sum_b.item() == pytest.approx(p_rg.item(), rel=tol, abs=tol)


def test_coupled_mixture_sums_to_one_over_all_colours():
    """P summed over every (G, B) for an R is the mixture's marginal of R alone (the uncoupled mixture
    with R's logits, means and scales), and those marginals sum to 1 over R."""
    m = 2
    params = coupled_params(m, seed=3, scale_range=(-3.0, -1.0))
    dist = coupled(m)(params)
    gb = torch.cartesian_prod(torch.arange(256), torch.arange(256))
    marginal_r = DiscretizedLogisticMixture(
        dist.logits.unsqueeze(-3), dist.means[..., :1, :, :], dist.log_scales[..., :1, :, :]
    )
    p_r = marginal_r.log_prob_per_pixel(LEVELS.view(256, 1, 1, 1)).exp().view(256)
    torch.testing.assert_close(p_r.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-12)
    for r in (0, 90, 181, 255):
        x = torch.stack([torch.full((65536,), r), gb[:, 0], gb[:, 1]], 1).double().view(-1, 3, 1, 1) / 255
        total = dist.log_prob(x).exp().sum()
        assert total.item() == pytest.approx(p_r[r].item(), rel=1e-9, abs=1e-15)


def test_coupled_samples_are_levels_and_follow_the_coupling():
    torch.manual_seed(0)
    params = coupled_params(3, seed=4, h=4, w=5, scale_range=(-3.0, -1.0)).float()
    lik = coupled(3)
    s = lik(params).sample((2,))
    assert s.shape == (2, 1, 3, 4, 5) and s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 255, torch.round(s * 255))
    assert lik.mean(params).shape == (1, 3, 4, 5)
    # With a tiny scale a draw is its component's mean, rounded: R, then G at that R, then B at both.
    params = coupled_params(1, seed=5, h=3, w=3)
    params[:, 4:7] = -14.0
    lik = coupled(1, min_log_scale=-14.0)
    dist = lik(params)
    mu, coeff = dist.means[0, 0], dist.coeffs[0, 0]

    def level(v: torch.Tensor) -> torch.Tensor:
        return torch.round((v.clamp(-1, 1) + 1) / 2 * 255) / 255 * 2 - 1

    r = level(mu[0])
    g = level(mu[1] + coeff[0] * r)
    b = level(mu[2] + coeff[1] * r + coeff[2] * g)
    expected = (torch.stack([r, g, b]) + 1) / 2
    torch.testing.assert_close(dist.sample()[0], expected, rtol=0, atol=1e-12)


def test_coupled_sample_moments_match_log_prob():
    """Sample means of R, G, B and their products against the exact expectations under log_prob: a
    sampler that drew G without the drawn R (or with another coefficient) misses the products."""
    torch.manual_seed(1)
    m = 2
    params = coupled_params(m, seed=6, scale_range=(-4.5, -3.5))  # a few levels wide
    # Means away from the edges (tanh in +-0.4), strong coefficients of both signs.
    params[:, m : 4 * m] = torch.tensor([0.4, -0.3, 0.1, -0.2, 0.35, -0.4], dtype=torch.float64).view(
        1, -1, 1, 1
    )
    params[:, 7 * m :] = torch.tensor([0.9, -0.6, 0.5, -0.8, 0.7, 0.4], dtype=torch.float64).view(1, -1, 1, 1)
    dist = coupled(m)(params)
    n = 20000
    s = dist.sample((n,)).view(n, 3) * 255
    # Exact expectations over every colour within 12 levels of a draw: holds all but ~1e-6 of the mass.
    boxes = [
        torch.arange(int(lo), int(hi) + 1)
        for lo, hi in zip(s.min(0).values - 12, s.max(0).values + 12, strict=True)
    ]
    grid = torch.cartesian_prod(*[b.clamp(0, 255).unique() for b in boxes]).double()
    p = dist.log_prob(grid.view(-1, 3, 1, 1) / 255).exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-4)
    for f in (
        lambda x: x[:, 0],
        lambda x: x[:, 1],
        lambda x: x[:, 2],
        lambda x: x[:, 0] * x[:, 1],
        lambda x: x[:, 0] * x[:, 2],
        lambda x: x[:, 1] * x[:, 2],
    ):
        exact = (p * f(grid)).sum() / p.sum()
        values = f(s.double())
        se = values.std() / math.sqrt(n)
        assert abs(values.mean() - exact) < 5 * se + 1e-9


@pytest.mark.parametrize("is_coupled", [False, True])
def test_gradients_are_finite_at_extremes(is_coupled):
    m = 2
    lik = (
        coupled(m)
        if is_coupled
        else LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=m), 3)
    )
    n = lik.param_channels
    # Scales at and far below the floor, far above the cap; means and coefficients saturated.
    params = torch.tensor([-30.0, -7.0, 0.0, 9.0, 30.0]).repeat(n // 5 + 1)[:n].view(1, n, 1, 1)
    params = params.expand(4, n, 2, 3).clone().requires_grad_(True)
    x = torch.tensor([0.0, 255.0, 1.0, 254.0])[:, None, None, None].expand(4, 3, 2, 3) / 255
    lp = lik(params).log_prob(x)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()


def test_coupled_raw_mean_leaves_the_range_where_the_coupling_does_and_keeps_its_gradient():
    # One component, one pixel: R's mean near +1 and alpha near +1 put G's mean at ~1.46 in [-1, 1]
    # units. The shown mean clips it to 1 (no gradient); the adversarial objective's raw_mean must not.
    params = torch.zeros(1, 10, 1, 1)
    params[0, 1], params[0, 2], params[0, 7] = 5.0, 0.5, 5.0  # mean R, mean G, coefficient alpha
    params.requires_grad_(True)
    lik = coupled(1)
    raw, shown = lik.raw_mean(params), lik.mean(params)
    assert raw[0, 1].item() == pytest.approx((math.tanh(0.5) + math.tanh(5.0) ** 2 + 1) / 2, abs=1e-5)
    assert raw[0, 1].item() > 1.2 and shown[0, 1].item() == pytest.approx(1.0)
    (grad_raw,) = torch.autograd.grad(raw[0, 1].sum(), params)
    (grad_shown,) = torch.autograd.grad(lik.mean(params)[0, 1].sum(), params)
    assert grad_raw[0, 2].abs().item() > 0.1 and grad_shown[0, 2].item() == 0.0
    # The uncoupled mixture's means pass through tanh: its raw mean is its mean.
    plain = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(components=2), 3)
    p = torch.randn(2, plain.param_channels, 3, 3) * 3
    torch.testing.assert_close(plain.raw_mean(p), plain.mean(p))
