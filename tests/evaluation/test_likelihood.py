"""The importance-weighted estimator on a linear-Gaussian VAE whose exact log p(x) is known."""

import math

import pytest
import torch
from tests.helpers import mlp_vae
from torch.profiler import ProfilerActivity, profile

from vaelab.data import ImageDataset
from vaelab.evaluation import evaluate_log_likelihood, iw_log_likelihood_batch, nats_to_bits_per_dim
from vaelab.evaluation.likelihood import chunk_sizes, nested_ks
from vaelab.models import VAE

from .helpers import analytic_elbo, exact_log_px, linear_gaussian_vae, random_images_vae, sample_data

SIGMA = 0.5


def perturbed(model: VAE) -> VAE:
    """Move the encoder away from the true posterior: a shrunk mean and a 2x wider variance."""
    with torch.no_grad():
        enc = model.encoder.net[0]
        enc.weight[:2] *= 0.6
        enc.bias[:2] += 0.3
        enc.bias[2:] += math.log(2.0)
    return model


def test_exact_posterior_gives_exact_log_px_for_any_k_and_chunking():
    model, w, b = linear_gaussian_vae(SIGMA)
    x = sample_data(w, b, SIGMA, 64)
    exact = exact_log_px(x, w, b, SIGMA)
    torch.manual_seed(0)
    # Every importance weight equals p(x) when q is the true posterior, so each chunk's log-sum-exp
    # and their running combination must reproduce log p(x) to float precision, whatever the chunks.
    for k, budget in [(1, 1 << 20), (37, 4 * 64 * 3), (200, 4 * 64)]:
        est = iw_log_likelihood_batch(model, x, k, max_elements=budget, report_ks=(1, 10))
        for value in est.values():
            torch.testing.assert_close(value, exact, atol=2e-4, rtol=0)


def test_estimate_rises_to_exact_log_px_and_stays_below_it():
    model, w, b = linear_gaussian_vae(SIGMA)
    perturbed(model)
    x = sample_data(w, b, SIGMA, 400)
    exact = exact_log_px(x, w, b, SIGMA)
    dataset = ImageDataset(torch.zeros(400, 1, 2, 2, dtype=torch.uint8), None, "lg", None)
    # evaluate_log_likelihood reads uint8 images; this model lives on real-valued x, so go one level down.
    torch.manual_seed(3)
    est = iw_log_likelihood_batch(model, x, 1000, report_ks=(1, 10, 100))
    gaps = {k: float((est[k] - exact).mean()) for k in (1, 10, 100, 1000)}
    ses = {k: float((est[k] - exact).std() / math.sqrt(len(x))) for k in gaps}
    assert gaps[1] < gaps[10] < gaps[100] <= gaps[1000] + 3 * ses[1000]
    assert gaps[1] < -0.2  # the perturbed encoder leaves a real ELBO gap...
    assert abs(gaps[1000]) < 0.02  # ...that K = 1000 all but closes
    for k in gaps:  # a lower bound in expectation: never significantly above the truth
        assert gaps[k] <= 3 * ses[k] + 1e-6, (k, gaps[k], ses[k])
    assert len(dataset) == 400


def test_k1_equals_the_elbo_in_expectation():
    model, w, b = linear_gaussian_vae(SIGMA)
    perturbed(model)
    x = sample_data(w, b, SIGMA, 100).repeat(100, 1, 1, 1)  # 100 draws per image
    torch.manual_seed(1)
    k1 = iw_log_likelihood_batch(model, x, 1)[1]
    with torch.no_grad():
        elbo = analytic_elbo(model, x, w, b, SIGMA)
    diff = k1 - elbo
    se = float(diff.std() / math.sqrt(len(diff)))
    assert abs(float(diff.mean())) < 4 * se
    # The test has the power to tell the ELBO from log p(x): the gap is many standard errors wide.
    gap = float((elbo - exact_log_px(x, w, b, SIGMA)).mean())
    assert gap < -8 * se, (gap, se)


def test_evaluate_log_likelihood_is_seeded_and_reports_nested_k():
    model, ds = random_images_vae(20)
    a = evaluate_log_likelihood(model, ds, iw_samples=50, seed=5, batch_size=7)
    b = evaluate_log_likelihood(model, ds, iw_samples=50, seed=5, batch_size=7)
    torch.testing.assert_close(a.log_px, b.log_px)
    assert sorted(a.by_k) == [1, 10, 50] and a.images == 20
    mean, se = a.mean_and_se()
    assert math.isfinite(mean) and se > 0
    state = torch.get_rng_state()
    evaluate_log_likelihood(model, ds, iw_samples=5, seed=9)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched


def test_chunk_sizes_are_one_size_and_sum_to_k():
    assert chunk_sizes(5000, 53) == [50] * 100  # the largest divisor of K within the cap
    assert chunk_sizes(30, 1 << 20) == [30]  # K fits: one chunk
    assert chunk_sizes(37, 12) == [12, 12, 12, 1]  # K prime: the cap, and a smaller last chunk
    assert chunk_sizes(7, 1) == [1] * 7
    for k, cap in [(1000, 53), (999, 40), (64, 8), (5000, 7)]:
        sizes = chunk_sizes(k, cap)
        assert sum(sizes) == k and max(sizes) <= cap and len(set(sizes[:-1])) <= 1
    with pytest.raises(ValueError, match="iw_samples"):
        chunk_sizes(0, 5)


def test_reported_k_inside_a_chunk_uses_exactly_its_first_samples():
    # One chunk of 20 weights, cut at K' = 3 and 10: each estimate is the log-mean-exp of the first K'
    # weights of that same draw, recomputed here from the weights themselves.
    model, w, b = linear_gaussian_vae(SIGMA)
    perturbed(model)
    x = sample_data(w, b, SIGMA, 8)
    torch.manual_seed(4)
    est = iw_log_likelihood_batch(model, x, 20, report_ks=(3, 10))
    torch.manual_seed(4)
    with torch.inference_mode():
        log_w = model.log_importance_weights(x, 20).double()
    for k in (3, 10, 20):
        torch.testing.assert_close(est[k], torch.logsumexp(log_w[:k], 0) - math.log(k))


def test_the_estimate_counts_its_flops_against_a_hand_count():
    torch.manual_seed(0)
    model = mlp_vae(8, 4, 16)
    ds = ImageDataset(torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8), None, "rand", None)
    # Encoder 64 -> 16 -> 2 x 4, decoder 4 -> 16 -> 64: 2 FLOPs per multiply-add.
    encoder, decoder = 2 * (64 * 16 + 16 * 8), 2 * (4 * 16 + 16 * 64)
    # 5 images per batch and room for 6 samples each: K = 30 in 5 chunks of 6, the encoder once per chunk.
    result = evaluate_log_likelihood(model, ds, iw_samples=30, batch_size=5, max_elements=5 * 64 * 6)
    assert result.flops == 10 * (5 * encoder + 30 * decoder)


def test_nested_ks():
    assert nested_ks(5000) == [1, 10, 100, 1000, 5000]
    assert nested_ks(1000) == [1, 10, 100, 1000]
    assert nested_ks(1) == [1]


def test_bits_per_dim():
    # A uniform density on [0, 1]^D has log p = 0: exactly 8 bits per 8-bit pixel.
    assert nats_to_bits_per_dim(0.0, 784, levels=256) == pytest.approx(8.0)
    # A fair coin per binary pixel: D ln 2 nats = 1 bit per dimension.
    assert nats_to_bits_per_dim(784 * math.log(2), 784, levels=None) == pytest.approx(1.0)
    # Linear in the NLL: one more nat per image is 1 / (D ln 2) more bits per dimension.
    d = 3 * 32 * 32
    assert nats_to_bits_per_dim(1000.0, d) - nats_to_bits_per_dim(0.0, d) == pytest.approx(
        1000.0 / (d * math.log(2))
    )


def test_k5000_never_allocates_k_by_batch_by_pixels():
    torch.manual_seed(0)
    model = mlp_vae(8, 4, 16)
    x = torch.rand(16, 1, 8, 8).bernoulli()
    k, budget = 5000, 1 << 16
    full_bytes = k * x.shape[0] * 64 * 4  # one float32 tensor of K x batch x pixels: 20 MB
    decoded: list[int] = []
    hook = model.decoder.register_forward_hook(lambda m, i, o: decoded.append(o.numel()))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        est = iw_log_likelihood_batch(model, x, k, max_elements=budget)
    hook.remove()
    assert torch.isfinite(est[k]).all()
    assert sum(decoded) == k * x.shape[0] * 64  # all K samples were decoded...
    assert max(decoded) <= budget  # ...in chunks within the budget
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest < full_bytes / 20, biggest  # no single op allocated anything near K x B x pixels
