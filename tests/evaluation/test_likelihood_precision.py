"""bf16 importance-weighted evaluation: the same estimate as fp32 within bf16's rounding."""

import pytest
import torch
from tests.helpers import mlp_vae

from vaelab.evaluation import iw_log_likelihood_batch

from .helpers import exact_log_px, linear_gaussian_vae, sample_data


def test_bf16_estimate_is_close_to_exact_and_to_fp32():
    model, w, b = linear_gaussian_vae(0.5)
    x = sample_data(w, b, 0.5, 64)
    exact = exact_log_px(x, w, b, 0.5)
    torch.manual_seed(0)
    fp32 = iw_log_likelihood_batch(model, x, 200)[200]
    torch.manual_seed(0)
    bf16 = iw_log_likelihood_batch(model, x, 200, precision="bf16")[200]
    assert bf16.dtype == torch.float64
    # bf16 keeps 8 bits of mantissa in the network's outputs (about 0.4% relative error per pixel
    # mean), so the estimate moves by a few hundredths of a nat per image here, not by tenths.
    assert (bf16 - fp32).abs().mean() < 0.05
    assert (bf16 - exact).abs().mean() < 0.1


def test_bf16_on_a_bernoulli_mlp_agrees_with_fp32_on_the_mean():
    torch.manual_seed(0)
    model = mlp_vae(12, 8, 64)
    x = torch.bernoulli(torch.full((32, 1, 12, 12), 0.3))
    torch.manual_seed(1)
    fp32 = iw_log_likelihood_batch(model, x, 100)[100].mean()
    torch.manual_seed(1)
    bf16 = iw_log_likelihood_batch(model, x, 100, precision="bf16")[100].mean()
    assert float(bf16) == pytest.approx(float(fp32), abs=0.1)


def test_unknown_precision_is_refused():
    model, w, b = linear_gaussian_vae(0.5)
    with pytest.raises(ValueError, match="precision must be fp32 or bf16"):
        iw_log_likelihood_batch(model, sample_data(w, b, 0.5, 4), 10, precision="fp16")


def test_compiled_estimate_equals_eager_and_is_recorded():
    from vaelab.data import ImageDataset
    from vaelab.evaluation import evaluate_log_likelihood

    torch.manual_seed(0)
    model = mlp_vae(8, 4, 32)
    images = (torch.rand(24, 1, 8, 8) > 0.6).to(torch.uint8) * 255
    data = ImageDataset(images, None, "test", None)
    from torch._dynamo.utils import counters

    eager = evaluate_log_likelihood(model, data, iw_samples=30, batch_size=12, seed=3)
    graphs = counters["stats"]["unique_graphs"]
    compiled = evaluate_log_likelihood(model, data, iw_samples=30, batch_size=12, seed=3, compile=True)
    # K = 1 and 10 on the way to 30 cut one chunk of 30 rather than drawing chunks of 1, 9 and 20:
    # one shape, one compiled graph (each new shape would be a recompilation).
    assert counters["stats"]["unique_graphs"] - graphs == 1
    # The same draws through the same arithmetic, fused: equal to float rounding, at every K.
    for k in (1, 10, 30):
        assert torch.allclose(compiled.by_k[k], eager.by_k[k], atol=1e-4)
    assert compiled.compiled and not eager.compiled and compiled.precision == "fp32"
