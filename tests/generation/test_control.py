"""Control over generation: slerp norms, attribute vectors and arithmetic, KL ordering, conditional labels,
and the ex-post GMM prior."""

from __future__ import annotations

import pytest
import torch

from vaelab.errors import ModelLoadError
from vaelab.generation import (
    attribute_vector,
    dims_by_kl,
    encode_mean,
    interpolate_latents,
    latent_arithmetic,
    sample,
)
from vaelab.generation.conditional import balanced_labels, class_grid_latents, parse_classes
from vaelab.generation.priors import fit_prior, load_prior, prior_path, save_prior


@pytest.mark.parametrize("seed", range(5))
def test_slerp_keeps_norms_between_its_endpoints(seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(32, generator=gen), 1.2 * torch.randn(32, generator=gen)
    norms = interpolate_latents(a, b, 11, "slerp").norm(dim=1)
    lo, hi = sorted([float(a.norm()), float(b.norm())])
    assert ((norms >= lo - 1e-4) & (norms <= hi + 1e-4)).all()
    # A straight line cuts the corner: in 32 dimensions its middle is much shorter than either end.
    assert float(interpolate_latents(a, b, 11, "linear")[5].norm()) < lo


def test_attribute_vector_is_the_difference_of_group_means(model):
    images = torch.rand(12, 1, 8, 8)
    labels = torch.tensor([0, 1, 2] * 4)
    z = encode_mean(model, images)
    v = attribute_vector(model, images, labels, 0, 2)
    torch.testing.assert_close(v, z[labels == 2].mean(0) - z[labels == 0].mean(0))
    with pytest.raises(ValueError, match="no images labelled 5"):
        attribute_vector(model, images, labels, 0, 5)
    out = latent_arithmetic(model, images[:2], v, torch.tensor([0.0, 1.0]))
    assert out.shape == (4, 1, 8, 8)
    torch.testing.assert_close(out[0], model.reconstruct(images[:1])[0])  # strength 0 = reconstruction
    torch.testing.assert_close(out[1], model.decode((z[:1] + v).reshape(1, -1))[0])


def test_dims_by_kl_orders_most_informative_first():
    assert dims_by_kl(torch.tensor([0.1, 3.0, 0.0, 1.0]), 3) == [1, 3, 0]


def test_class_labels():
    assert balanced_labels(7, [2, 5]).tolist() == [2, 2, 2, 2, 5, 5, 5]
    counts = torch.bincount(balanced_labels(1000, list(range(10))))
    assert counts.tolist() == [100] * 10
    assert parse_classes("all", 3) == [0, 1, 2] and parse_classes("1,2", 3) == [1, 2]
    with pytest.raises(ValueError, match="class 3 is out of range: this model has 3 classes"):
        parse_classes("3", 3)
    with pytest.raises(ValueError, match="a class number, a comma-separated list or 'all'"):
        parse_classes("seven", 3)
    z, labels = class_grid_latents(torch.randn(4, 2), 3)
    assert z.shape == (12, 2) and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(z[:4], z[4:8])


def test_gmm_prior_fits_saves_and_samples(model, tmp_path):
    images = torch.rand(200, 1, 8, 8)
    prior = fit_prior(model, images, "gmm", {"components": 3}, seed=0)
    assert prior.weights.shape == (3,) and prior.covariances.shape == (3, 5, 5)
    assert float(prior.weights.sum()) == pytest.approx(1.0)
    model.save_pretrained(tmp_path)
    path = save_prior(prior, tmp_path)
    assert path == prior_path(tmp_path, "gmm") and path.name == "prior_gmm.safetensors"
    again = load_prior(tmp_path, "gmm", model.latent_dim)
    assert torch.equal(again.means, prior.means) and again.config.components == 3
    z = again.sample(4000, seed=0)
    # Samples follow the mixture: their mean is the weighted mean of the components' means.
    torch.testing.assert_close(z.mean(0).double(), prior.weights @ prior.means, atol=0.02, rtol=0)
    a = sample(model, 6, seed=1, prior=again)
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, sample(model, 6, seed=1, prior=again))
    with pytest.raises(ModelLoadError, match="over 5 latent dimensions; the model has 7"):
        load_prior(tmp_path, "gmm", 7)


def test_missing_gmm_prior_says_how_to_make_one(model, tmp_path):
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vaelab fit-prior .* --prior gmm"):
        load_prior(tmp_path, "gmm")
