"""The pixelcnn likelihood: causal, normalised over whole 8-bit images, and decoded consistently."""

from __future__ import annotations

import itertools

import pytest
import torch

from vaelab.errors import UsageError
from vaelab.export import export_onnx
from vaelab.models import VAE
from vaelab.models.config import ModelConfig
from vaelab.models.parts.autoregressive import PixelCNNLikelihood, PixelCNNLikelihoodConfig
from vaelab.models.parts.likelihoods import BernoulliLikelihood, BernoulliLikelihoodConfig
from vaelab.models.parts.logistic import LogisticMixtureLikelihood, LogisticMixtureLikelihoodConfig


def trained_looking(part: PixelCNNLikelihood, seed: int = 0) -> PixelCNNLikelihood:
    """The part with its zero-initialised output layer made non-zero, so the context matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in part.out.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return part


@pytest.mark.parametrize(("channels", "coupled", "gated"), [(3, True, 0), (1, False, 0), (3, True, 2)])
def test_a_pixels_parameters_read_only_the_pixels_before_it(channels: int, coupled: bool, gated: int) -> None:
    torch.manual_seed(0)
    config = PixelCNNLikelihoodConfig(coupled=coupled, gated_layers=gated)
    part = trained_looking(PixelCNNLikelihood(config, channels))
    params = torch.randn(2, part.param_channels, 6, 5)
    x = torch.randint(0, 256, (2, channels, 6, 5)).float() / 255
    changed = x.clone()
    changed[:, :, 3, 2:] = torch.rand(2, channels, 3)  # pixel (3, 2) and everything after it
    changed[:, :, 4:] = torch.rand(2, channels, 2, 5)
    diff = (part.pixel_params(params, x) - part.pixel_params(params, changed)).abs().amax((0, 1))
    moved = diff.flatten().nonzero().flatten()
    # Pixel (3, 2) is raster position 17: its own parameters and all before it are unchanged; the next
    # pixel reads it.
    assert moved.min().item() == 3 * 5 + 2 + 1


@pytest.mark.parametrize("gated", [0, 1])
def test_probabilities_of_all_images_sum_to_one(gated: int) -> None:
    """A two-pixel greyscale image: the 65,536 images' probabilities sum to 1, so the product of the
    per-pixel conditionals is a normalised distribution over whole images (bits/dim is a code length)."""
    torch.manual_seed(1)
    config = PixelCNNLikelihoodConfig(coupled=False, components=3, gated_layers=gated)
    part = trained_looking(PixelCNNLikelihood(config, 1))
    params = torch.randn(1, part.param_channels, 1, 2)
    levels = torch.arange(256.0) / 255
    images = torch.stack(torch.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 1, 1, 2)
    with torch.no_grad():
        log_p = part(params.expand(len(images), -1, -1, -1)).log_prob(images)
    total = torch.logsumexp(log_p.double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-4)
    # and the second pixel's distribution really depends on the first. For RGB each factor is the
    # coupled mixture (normalised over 256^3 values: test_colour_likelihoods.py) at parameters that do
    # not read the pixel itself (the causality test above), so the same argument holds.
    assert log_p.view(256, 256).softmax(1).std(0).max() > 1e-3


@pytest.mark.parametrize("gated", [0, 2])
def test_untrained_head_is_the_plain_mixture(gated: int) -> None:
    """The output layer starts at zero: training starts from ``logistic_mixture`` exactly."""
    torch.manual_seed(3)
    part = PixelCNNLikelihood(PixelCNNLikelihoodConfig(gated_layers=gated), 3)
    plain = LogisticMixtureLikelihood(LogisticMixtureLikelihoodConfig(coupled=True), 3)
    params = torch.randn(4, part.param_channels, 8, 8)
    x = torch.randint(0, 256, (4, 3, 8, 8)).float() / 255
    torch.testing.assert_close(part(params).log_prob(x), plain(params).log_prob(x))


@pytest.mark.parametrize(("kernel", "gated"), [(3, 0), (3, 2), (5, 1)])
def test_decoding_is_consistent_with_the_teacher_forced_pass(kernel: int, gated: int) -> None:
    """Also checks the decoder's crop windows: a window that missed part of what the pixel reads would
    give it other parameters than the full-image pass (the image is larger than the windows)."""
    torch.manual_seed(4)
    part = trained_looking(PixelCNNLikelihood(PixelCNNLikelihoodConfig(kernel=kernel, gated_layers=gated), 3))
    params = torch.randn(3, part.param_channels, 9, 10)
    mean = part.mean(params)
    # every pixel of the greedy image is the mixture mean given the greedy image's earlier pixels
    teacher = part.mixture(part.pixel_params(params, mean)).mean.clamp(0, 1)
    torch.testing.assert_close(mean, teacher, atol=1e-5, rtol=0)
    torch.manual_seed(5)
    drawn = part(params).sample()
    assert drawn.shape == (3, 3, 9, 10)
    assert torch.allclose(drawn * 255, (drawn * 255).round(), atol=1e-3)  # 8-bit levels
    assert drawn.min() >= 0 and drawn.max() <= 1
    assert torch.isfinite(part(params).log_prob(drawn)).all()


def test_even_kernel_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="kernel must be odd"):
        PixelCNNLikelihoodConfig(kernel=4)


def small_pixelcnn_vae(channels: int) -> VAE:
    config = ModelConfig(
        image_shape=(channels, 8, 8),
        latent_dim=4,
        encoder={"name": "conv", "channels": [8, 8]},
        decoder={"name": "conv", "channels": [8, 8]},
        likelihood={"name": "pixelcnn", "coupled": channels == 3, "hidden": 8},
    )
    return VAE(config)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_vae_trains_samples_and_reconstructs_with_it(channels: int) -> None:
    torch.manual_seed(6)
    model = small_pixelcnn_vae(channels)
    x = torch.randint(0, 256, (5, channels, 8, 8)).float() / 255
    out = model(x)
    (-out.elbo.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.likelihood.context.weight.grad is not None
    assert model.sample(3).shape == (3, channels, 8, 8)
    assert model.reconstruct(x).shape == x.shape
    assert torch.isfinite(model.log_importance_weights(x, 3)).all()


def test_onnx_export_refuses_it_by_name(tmp_path) -> None:
    with pytest.raises(UsageError, match="pixelcnn"):
        export_onnx(small_pixelcnn_vae(3), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_loops_visit_every_pixel_once() -> None:
    """The raster loop writes each pixel exactly once, in order (guards the window arithmetic)."""
    part = PixelCNNLikelihood(PixelCNNLikelihoodConfig(kernel=5, coupled=False), 1)
    params = torch.zeros(1, part.param_channels, 3, 4)
    seen: list[tuple[int, int]] = []
    at = part.params_at

    def spy(params: torch.Tensor, image: torch.Tensor, i: int, j: int) -> torch.Tensor:
        seen.append((i, j))
        return at(params, image, i, j)

    part.params_at = spy  # type: ignore[method-assign]
    part.mean(params)
    assert seen == list(itertools.product(range(3), range(4)))


def test_gated_stacks_see_the_whole_causal_window_without_a_blind_spot() -> None:
    """With gated layers, pixel (i, j) reads every pixel of rows i - reach .. i - 1 within reach columns
    on either side (the top right too, which a stack of masked 3 x 3 convolutions misses) and the reach
    pixels to its left."""
    torch.manual_seed(7)
    part = trained_looking(
        PixelCNNLikelihood(PixelCNNLikelihoodConfig(kernel=3, gated_layers=2, coupled=False), 1)
    )
    assert part.reach == 3
    params = torch.randn(1, part.param_channels, 9, 9)
    x = torch.rand(1, 1, 9, 9, requires_grad=True)
    part.pixel_params(params, x)[0, :, 6, 4].sum().backward()
    read = x.grad[0, 0] != 0
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[3:6, 1:8] = True
    expected[6, 1:4] = True
    assert torch.equal(read, expected)


def bernoulli_head(channels: int = 1, kernel: int = 3, gated: int = 0, seed: int = 8) -> PixelCNNLikelihood:
    torch.manual_seed(seed)
    config = PixelCNNLikelihoodConfig(pixel="bernoulli", kernel=kernel, gated_layers=gated, hidden=8)
    return trained_looking(PixelCNNLikelihood(config, channels), seed)


@pytest.mark.parametrize("gated", [0, 1])
def test_bernoulli_pixels_are_causal_and_normalised_over_binary_images(gated: int) -> None:
    """``pixel: bernoulli``: one logit per pixel and channel, reading only earlier pixels, and the 2^6
    binary 2 x 3 images' probabilities sum to 1 (nats per binarised image are a code length)."""
    part = bernoulli_head(gated=gated)
    assert part.param_channels == 1 and not part.discrete
    params = torch.randn(1, 1, 2, 3)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6))).view(-1, 1, 2, 3)
    with torch.no_grad():
        log_p = part(params.expand(len(images), -1, -1, -1)).log_prob(images)
    assert torch.logsumexp(log_p.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-6)
    logits = part.pixel_params(params.expand(len(images), -1, -1, -1), images).view(len(images), 6)
    # pixel k's logit is the same for all images that agree before k, and differs for some that do not
    for k in range(6):
        groups = logits[:, k].view(2**k, 2 ** (6 - k))
        assert torch.allclose(groups, groups[:, :1].expand_as(groups))
        if k:
            assert groups[:, 0].std() > 1e-3


def test_untrained_bernoulli_head_is_the_plain_bernoulli() -> None:
    part = PixelCNNLikelihood(PixelCNNLikelihoodConfig(pixel="bernoulli"), 1)
    params = torch.randn(4, 1, 7, 7)
    x = (torch.rand(4, 1, 7, 7) > 0.5).float()
    plain = BernoulliLikelihood(BernoulliLikelihoodConfig(), 1)
    torch.testing.assert_close(part(params).log_prob(x), plain(params).log_prob(x))


@pytest.mark.parametrize(("kernel", "gated"), [(3, 0), (5, 1)])
def test_bernoulli_decoding_is_binary_and_consistent_with_teacher_forcing(kernel: int, gated: int) -> None:
    part = bernoulli_head(channels=2, kernel=kernel, gated=gated)
    params = torch.randn(3, 2, 9, 10)
    mean = part.mean(params)
    # the greedy image: every pixel is its more likely value given the greedy image's earlier pixels
    assert set(mean.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(mean, (part.pixel_params(params, mean) > 0).float())
    drawn = part(params).sample()
    assert drawn.shape == (3, 2, 9, 10) and set(drawn.unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(part(params).log_prob(drawn)).all()
