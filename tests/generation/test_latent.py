"""Latent-space walks: interpolation, traversal, per-dimension KL and the PCA map, against closed forms."""

import pytest
import torch

from vaelab.generation import (
    encode_mean,
    interpolate,
    interpolate_latents,
    kl_per_dim,
    project_pca,
    traverse,
    traverse_latents,
)
from vaelab.models import VAE, ModelConfig


def test_linear_interpolation_hits_both_ends_evenly():
    a, b = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    z = interpolate_latents(a, b, 5)
    assert torch.equal(z[0], a) and torch.equal(z[-1], b)
    assert torch.allclose(z[2], (a + b) / 2)


def test_slerp_keeps_the_great_circle_and_interpolates_the_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])
    z = interpolate_latents(a, b, 3, "slerp")
    assert torch.allclose(z[0], a) and torch.allclose(z[-1], b, atol=1e-6)
    assert torch.allclose(z[1].norm(), torch.tensor(2.0))  # halfway between norms 3 and 1
    assert torch.allclose(z[1] / z[1].norm(), torch.tensor([1.0, 1.0]) / 2**0.5)  # halfway in angle
    same = interpolate_latents(a, 2 * a, 3, "slerp")  # parallel ends: falls back to a straight line
    assert torch.allclose(same[1], 1.5 * a)


def test_interpolation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        interpolate_latents(torch.zeros(2), torch.ones(2), 1)
    with pytest.raises(ValueError, match="mode"):
        interpolate_latents(torch.zeros(2), torch.ones(2), 3, "cubic")  # type: ignore[arg-type]


def test_interpolate_decodes_the_posterior_means(model):
    x = torch.rand(2, 1, 8, 8)
    images = interpolate(model, x[0], x[1], steps=4)
    assert images.shape == (4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(images[0], model.reconstruct(x[:1])[0], atol=1e-6)
        assert torch.allclose(images[-1], model.reconstruct(x[1:])[0], atol=1e-6)


def test_traverse_sweeps_one_dimension_per_row(model):
    z = torch.arange(5.0)
    values = torch.tensor([-1.0, 0.0, 1.0])
    grid = traverse_latents(z, [1, 3], values)
    assert grid.shape == (6, 5)
    assert torch.equal(grid[:3, 1], values) and torch.equal(grid[3:, 3], values)
    assert torch.equal(grid[:3, 3], torch.full((3,), 3.0))  # other dimensions untouched
    assert traverse(model, z, [1, 3], values).shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="dimensions"):
        traverse_latents(z, [5], values)


def test_kl_per_dim_sums_to_the_models_kl(model):
    x = torch.rand(16, 1, 8, 8)
    per_dim = kl_per_dim(model, x, batch_size=5)
    with torch.no_grad():
        q = model.encode(x)
        total = model.kl(q, q.mean).mean()
    assert per_dim.shape == (5,) and (per_dim >= 0).all()
    assert torch.allclose(per_dim.sum(), total, rtol=1e-5)


def test_pca_projection_round_trips_points_on_its_plane():
    gen = torch.Generator().manual_seed(0)
    coords = torch.randn(200, 2, generator=gen) * torch.tensor([3.0, 1.0])
    basis = torch.linalg.qr(torch.randn(6, 2, generator=gen))[0].T  # two orthonormal directions in 6-D
    z = coords @ basis + torch.arange(6.0)
    p = project_pca(z)
    assert p.components.shape == (2, 6)
    assert torch.allclose(p.explained_variance_ratio.sum(), torch.tensor(1.0))
    assert p.explained_variance_ratio[0] > p.explained_variance_ratio[1]
    assert torch.allclose(p.to_latent(p.coords), z, atol=1e-4)  # every point lies on the plane
    again = project_pca(z.flip(0))
    assert torch.allclose(again.components, p.components, atol=1e-5)  # signs are fixed, not arbitrary


def test_encode_mean_batches(model):
    x = torch.rand(7, 1, 8, 8)
    assert torch.allclose(encode_mean(model, x, batch_size=3), encode_mean(model, x), atol=1e-6)
    assert encode_mean(model, x[:0]).shape == (0, 5)


def test_generated_tensors_can_feed_autograd():
    """sample/reconstruct/interpolate outputs are ordinary tensors (not inference-mode ones), so a user
    can pass them back through the model and backpropagate, as the README's API example does."""
    import torch

    from vaelab.generation import reconstruct, sample

    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=2))
    for images in (sample(model, 3, seed=0), reconstruct(model, torch.rand(3, 1, 6, 6))):
        out = model(images)
        (-out.elbo.mean()).backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()
