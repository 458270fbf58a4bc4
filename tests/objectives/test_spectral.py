"""Spectral regularisation: the radial power spectrum it matches, and its term in the adversarial loss."""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.helpers import mlp_vae

from vaelab.objectives import AdversarialConfig, build_objective
from vaelab.objectives.spectral import radial_power_spectrum, spectral_distance


def test_the_spectrum_sums_to_the_pixel_variance_and_finds_a_pure_frequency():
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    power, radius = radial_power_spectrum(x)
    assert radius[0] == 0 and power[:, 0].abs().max() < 1e-20  # the means are removed
    # Parseval: the per-bin means times the frequencies in each bin sum to the variance.
    _, counts = torch.unique(
        torch.round(
            torch.sqrt(torch.fft.fftfreq(16)[:, None] ** 2 + torch.fft.fftfreq(16)[None, :] ** 2) * 16
        ).flatten(),
        return_counts=True,
    )
    total = (power * counts.double()).sum(1)
    assert torch.allclose(total, x.var(dim=(-2, -1), unbiased=False).mean(1))
    stripes = torch.cos(2 * math.pi * 4 * torch.arange(16.0) / 16).expand(1, 1, 16, 16)  # 0.25 c/px
    p, r = radial_power_spectrum(stripes)
    assert r[p[0].argmax()].item() == pytest.approx(0.25)


def test_the_distance_is_zero_for_identical_images_and_prices_blur_and_a_checkerboard():
    torch.manual_seed(0)
    smooth = lambda img: F.avg_pool2d(img, 3, stride=1, padding=1, count_include_pad=False)  # noqa: E731
    x = smooth(torch.rand(4, 3, 16, 16))  # little power at high frequencies, like photographs
    assert torch.equal(spectral_distance(x, x), torch.zeros(4))
    blurred = smooth(x)
    checker = x + 0.05 * (-1.0) ** (torch.arange(16)[:, None] + torch.arange(16)[None, :])
    assert (spectral_distance(x, blurred) > 0.5).all() and (spectral_distance(x, checker) > 0.5).all()
    half = spectral_distance(x, 0.5 * x)  # a quarter of the power in every bin: (log 4)^2
    assert torch.allclose(half, torch.full((4,), math.log(4) ** 2), rtol=1e-4)
    fake = blurred.clone().requires_grad_()
    spectral_distance(x, fake).sum().backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_spectral_weight_adds_its_term_per_image_to_the_reconstruction_loss():
    torch.manual_seed(0)
    model = mlp_vae(8, 4, 16, likelihood={"name": "gaussian", "variance": "shared"}, image_shape=(3, 8, 8))
    x = torch.rand(4, 3, 8, 8)
    out = model(x)
    fake = model.likelihood.mean(out.px_params)
    plain = build_objective(AdversarialConfig(), model=model).reconstruction_loss(x, fake, out.log_px_z)
    spec = build_objective(AdversarialConfig(spectral_weight=0.3), model=model)
    with_term = spec.reconstruction_loss(x, fake, out.log_px_z)
    assert torch.allclose(with_term - plain, 0.3 * 3 * 8 * 8 * spectral_distance(x, fake), atol=1e-3)
