"""Sharpness metrics on images with known answers: blur lowers them, noise raises them."""

import math

import pytest
import torch
import torch.nn.functional as F

from vaelab.data import ImageDataset
from vaelab.evaluation import (
    EvaluationOptions,
    evaluate_model,
    high_frequency_power,
    laplacian_variance,
    near_binary_fraction,
    radial_power_spectrum,
    sharpness_ratios,
)
from vaelab.evaluation.report import write_report
from vaelab.evaluation.sharpness import ratio_of_means, sample_sharpness, spectrum_ratio
from vaelab.evaluation.tables import render_report
from vaelab.models import VAE, ModelConfig


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur (reflect padding) with standard deviation ``sigma`` pixels."""
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).float()
    c = images.shape[1]
    x = F.pad(images, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def strokes(n: int = 16, side: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with sharp-edged bars and texture, like pen strokes on paper."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, channels, side, side)
    for i in range(n):
        for _ in range(4):
            r, c = torch.randint(0, side - 6, (2,), generator=gen).tolist()
            h, w = torch.randint(2, 6, (2,), generator=gen).tolist()
            x[i, :, r : r + h, c : c + w] = 1.0
    return (x + 0.1 * torch.rand(x.shape, generator=gen)).clamp(0, 1)


def checkerboard(side: int = 8) -> torch.Tensor:
    """(1, 1, side, side) of alternating 0 and 1: all its power sits at the Nyquist corner."""
    idx = torch.arange(side)
    return ((idx[:, None] + idx[None, :]) % 2).float().view(1, 1, side, side)


def test_hand_computed_spectrum_and_laplacian_of_a_checkerboard_and_a_slow_cosine():
    board = checkerboard()
    spectrum, radius = radial_power_spectrum(board)
    # Pixel variance 0.25, all at frequency (0.5, 0.5): radius 0.707, the bin at 6/8 = 0.75.
    assert radius.tolist() == [i / 8 for i in range(7)]
    torch.testing.assert_close(spectrum, torch.tensor([[0, 0, 0, 0, 0, 0, 0.25]], dtype=torch.float64))
    torch.testing.assert_close(high_frequency_power(board), torch.tensor([0.25], dtype=torch.float64))
    # The 3x3 Laplacian of a 0/1 checkerboard is -4 on the ones and +4 on the zeros: variance 16.
    torch.testing.assert_close(laplacian_variance(board), torch.tensor([16.0], dtype=torch.float64))
    # One period over 8 pixels (0.125 cycles/pixel) is below half Nyquist: no HF power at all.
    slow = (0.5 + 0.5 * torch.cos(2 * math.pi * torch.arange(8) / 8)).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert float(high_frequency_power(slow)) == pytest.approx(0.0, abs=1e-12)
    # Constant images have no detail; uint8 images are read as /255.
    assert float(high_frequency_power(torch.full((1, 1, 8, 8), 0.3))) == pytest.approx(0.0, abs=1e-12)
    as_uint8 = (board * 255).to(torch.uint8)
    torch.testing.assert_close(high_frequency_power(as_uint8), high_frequency_power(board))


def test_identical_images_score_exactly_one():
    x = strokes(channels=3)
    ratios = sharpness_ratios(x, x.clone(), paired=True)
    assert ratios["hf_power_ratio"] == 1.0 and ratios["laplacian_var_ratio"] == 1.0
    assert ratios["hf_power_ratio_se"] == 0.0 and ratios["laplacian_var_ratio_se"] == 0.0


@pytest.mark.parametrize("name", ["hf_power_ratio", "laplacian_var_ratio"])
def test_blur_falls_below_one_and_further_with_more_blur(name):
    x = strokes()
    ratios = [sharpness_ratios(gaussian_blur(x, s), x, paired=True)[name] for s in (0.6, 1.0, 2.0)]
    assert ratios[0] < 0.9, ratios  # a light blur already loses fine detail
    assert ratios[0] > ratios[1] > ratios[2] > 0, ratios


@pytest.mark.parametrize("name", ["hf_power_ratio", "laplacian_var_ratio"])
def test_added_noise_rises_above_one(name):
    x = strokes()
    gen = torch.Generator().manual_seed(1)
    noisy = x + 0.2 * torch.randn(x.shape, generator=gen)
    more = x + 0.4 * torch.randn(x.shape, generator=gen)
    low = sharpness_ratios(noisy, x, paired=True)
    high = sharpness_ratios(more, x, paired=True)
    assert 1.0 < low[name] < high[name]
    assert low[name] - 3 * low[f"{name}_se"] > 1.0  # well clear of 1 by its standard error


def test_ratio_of_means_pairs_or_not_and_refuses_nothing_to_compare_with():
    a, b = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    ratio, se = ratio_of_means(a, b, paired=True)
    assert ratio == 1.0 and se == pytest.approx(
        math.sqrt(2) / (math.sqrt(2) * 2)
    )  # std(a - b) / (sqrt n mean b)
    ratio, se = ratio_of_means(a, b, paired=False)
    assert ratio == 1.0 and se == pytest.approx(math.sqrt(2 / (2 * 4)))  # only a varies
    assert math.isnan(ratio_of_means(a, torch.zeros(2), paired=False)[0])
    with pytest.raises(ValueError):
        ratio_of_means(a, torch.ones(3), paired=True)


def test_near_binary_fraction_against_hand_counts():
    # uint8: 25/255 = 0.098 and 230/255 = 0.902 count, 26/255 = 0.102 and 229/255 = 0.898 do not.
    pixels = torch.tensor([0, 25, 26, 128, 229, 230, 255, 255], dtype=torch.uint8).view(2, 1, 2, 2)
    torch.testing.assert_close(
        near_binary_fraction(pixels), torch.tensor([2 / 4, 3 / 4], dtype=torch.float64)
    )
    floats = torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0, 0.3]).view(1, 1, 2, 3)
    assert near_binary_fraction(floats).tolist() == [4 / 6]
    assert near_binary_fraction(floats, tolerance=0.3).tolist() == [5 / 6]
    binary = (strokes() > 0.5).float()
    assert near_binary_fraction(binary).tolist() == [1.0] * len(binary)
    assert near_binary_fraction(torch.full((1, 1, 4, 4), 0.5)).tolist() == [0.0]


def test_spectrum_ratio_shows_a_faint_checkerboard_as_a_spike_not_as_detail():
    data = gaussian_blur(strokes(n=20, side=16), 0.7)
    same = spectrum_ratio(data, data)
    assert same["radius"] == radial_power_spectrum(data)[1].tolist()
    assert math.isnan(same["ratio"][0])  # radius 0 holds only the removed means: nothing to compare
    assert all(r == pytest.approx(1.0) for r in same["ratio"][1:])
    # A checkerboard 2% of the range deep: invisible, but where the smooth data has almost no power.
    faint = data + 0.02 * (checkerboard(16) - 0.5)
    spiked = spectrum_ratio(faint, data)
    corner = max(range(len(spiked["radius"])), key=lambda i: spiked["radius"][i])
    assert spiked["ratio"][corner] > 2
    middle = [i for i, r in enumerate(spiked["radius"]) if 0.25 < r <= 0.5]
    assert all(spiked["ratio"][i] == pytest.approx(1.0, rel=1e-6) for i in middle)
    # The one HF number rises as though detail were added; the curve says where it came from.
    assert sharpness_ratios(faint, data, paired=True)["hf_power_ratio"] > 1.05


def test_spectrum_ratio_pools_chunks_and_says_what_it_cannot_compare(monkeypatch):
    import vaelab.evaluation.sharpness as sharpness

    a, b = strokes(n=7, side=12, seed=1), strokes(n=5, side=12, seed=2)
    whole = spectrum_ratio(a, b)
    monkeypatch.setattr(sharpness, "_CHUNK", 2)
    chunked = spectrum_ratio(a, b)
    torch.testing.assert_close(torch.tensor(chunked["ratio"][1:]), torch.tensor(whole["ratio"][1:]))
    # The HF power ratio is the ratio of the two mean spectra summed above half Nyquist.
    (mine, radius), (theirs, _) = sharpness.mean_radial_spectrum(a), sharpness.mean_radial_spectrum(b)
    hf = float(mine[radius > 0.25].sum() / theirs[radius > 0.25].sum())
    assert sharpness_ratios(a, b, paired=False)["hf_power_ratio"] == pytest.approx(hf)
    empty = spectrum_ratio(a[:0], b)
    assert empty["radius"] == whole["radius"] and all(math.isnan(r) for r in empty["ratio"])
    with pytest.raises(ValueError, match=r"one size; got \(12, 12\) and \(10, 10\)"):
        spectrum_ratio(a, strokes(n=2, side=10))


def test_sample_sharpness_compares_two_sets_and_reports_both_near_binary_fractions():
    data = (strokes(n=20) * 255).round().to(torch.uint8)
    blurry = gaussian_blur(strokes(n=30, seed=3), 1.5)
    out = sample_sharpness(blurry, data)
    assert out["samples"] == 30 and out["reference_images"] == 20
    assert 0 < out["hf_power_ratio"] < 0.5 and out["hf_power_ratio_se"] > 0
    assert 0 < out["laplacian_var_ratio"] < 0.5
    torch.testing.assert_close(out["data_near_binary_fraction"], float(near_binary_fraction(data).mean()))
    assert out["near_binary_fraction"] < out["data_near_binary_fraction"]
    assert out["near_binary_tolerance"] == 0.1


def test_evaluate_reports_sharpness_on_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    cfg = {"image_shape": (1, 8, 8), "latent_dim": 2, "encoder": {"name": "mlp", "hidden_dims": [16]}}
    cfg["decoder"] = {"name": "mlp", "hidden_dims": [16]}
    model = VAE(ModelConfig.model_validate(cfg)).eval()
    images = (strokes(n=12, side=8) * 255).round().to(torch.uint8)
    dataset = ImageDataset(images, None, "strokes", None)
    report = evaluate_model(model, dataset, options=EvaluationOptions(iw_samples=2, n_samples=10))
    recon = report["reconstruction"]
    for key in ("hf_power_ratio", "hf_power_ratio_se", "laplacian_var_ratio", "laplacian_var_ratio_se"):
        assert math.isfinite(recon[key]), key
    # An untrained decoder's means are near-flat grey: far less detail than the strokes it is given.
    assert 0 <= recon["hf_power_ratio"] < 0.5 and 0 <= recon["laplacian_var_ratio"] < 0.5
    sharp = report["sample_sharpness"]
    assert sharp["available"] and sharp["samples"] == 10 and sharp["reference_images"] == 12
    assert 0 <= sharp["hf_power_ratio"] < 0.5 and math.isfinite(sharp["laplacian_var_ratio"])
    assert sharp["near_binary_fraction"] < sharp["data_near_binary_fraction"]
    assert sharp["data_near_binary_fraction"] == pytest.approx(float(near_binary_fraction(images).mean()))
    # No labels, so no feature space: FD is unavailable but the samples' sharpness still is.
    assert report["sample_quality"]["available"] is False
    assert {"samples", "sample_sharpness"} <= set(report["timings_s"])
    table = render_report(report)
    for label in (
        "HF power ratio, reconstructions",
        "near-binary pixels, samples",
        "near-binary pixels, data",
    ):
        assert label in table
    assert "10 samples / 12 test images" in table
    for section in (recon, sharp):
        assert len(section["spectrum"]["ratio"]) == len(section["spectrum"]["radius"]) > 1
    assert "Power by frequency above half Nyquist" in table and "| samples / data |" in table
    write_report(report, tmp_path)
    assert (tmp_path / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_samples_the_sample_sharpness_section_says_why():
    torch.manual_seed(0)
    model = VAE(ModelConfig.model_validate({"image_shape": (1, 4, 4), "latent_dim": 2})).eval()
    dataset = ImageDataset(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), None, "r", None)
    report = evaluate_model(model, dataset, options=EvaluationOptions(iw_samples=2, sample_quality=False))
    assert report["sample_sharpness"] == {"available": False, "reason": "disabled (--no-sample-quality)"}
    assert math.isfinite(report["reconstruction"]["hf_power_ratio"])
