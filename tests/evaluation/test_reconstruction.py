"""PSNR and SSIM on images with known relations."""

import math

import torch

from vaelab.evaluation import compare_reconstructions, psnr, ssim
from vaelab.evaluation.sharpness import spectrum_ratio


def test_psnr_of_a_known_error():
    x = torch.zeros(2, 1, 8, 8)
    y = x + 0.1  # MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(y, x), torch.full((2,), 20.0))
    assert math.isfinite(float(psnr(x, x)[0]))  # identical images are capped, not infinite


def test_ssim_is_one_for_identical_images_and_orders_degradations():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=gen)
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    slightly = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    badly = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    s1, s2 = ssim(slightly, x), ssim(badly, x)
    assert (s1 < 1).all() and (s2 < s1).all()
    torch.testing.assert_close(ssim(slightly, x), ssim(x, slightly))  # symmetric
    # A constant shift of the mean only touches the luminance term: still close to 1.
    assert (ssim((x * 0.5 + 0.25) + 0.05, x * 0.5 + 0.25) > 0.9).all()


def test_ssim_handles_images_smaller_than_the_window_and_colour():
    x = torch.rand(2, 3, 6, 6)
    out = ssim(x, x.flip(-1))
    assert out.shape == (2,) and torch.isfinite(out).all()


def test_compare_reconstructions_pools_batches_as_one_set():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 12, 12, generator=gen)
    r = (x + 0.1).clamp(0, 1)
    whole = compare_reconstructions([(r, x)])
    split = compare_reconstructions(zip(r.split(2), x.split(2), strict=True))
    for key in ("mse", "psnr", "ssim", "hf_power_ratio"):
        assert math.isclose(whole[key], split[key], rel_tol=1e-6), key
    expected = spectrum_ratio(r, x)
    assert whole["spectrum"]["radius"] == expected["radius"]
    torch.testing.assert_close(
        torch.tensor(whole["spectrum"]["ratio"][1:]), torch.tensor(expected["ratio"][1:])
    )
    torch.testing.assert_close(
        torch.tensor(split["spectrum"]["ratio"][1:]), torch.tensor(whole["spectrum"]["ratio"][1:])
    )
    assert math.isclose(whole["mse"], float(((r - x) ** 2).mean()), rel_tol=1e-6)
    assert math.isclose(whole["psnr"], float(psnr(r, x).mean()), rel_tol=1e-6)
    same = compare_reconstructions([(x, x)])
    assert same["ssim"] == 1.0 and same["hf_power_ratio"] == 1.0
