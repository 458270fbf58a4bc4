"""Active units and per-dimension KL on a model with known dead dimensions."""

import torch

from vaelab.data import ImageDataset
from vaelab.evaluation import posterior_statistics
from vaelab.models import VAE, ModelConfig


def model_with_dead_dims() -> VAE:
    """Latent 4 on 1x4x4 images: dims 0 and 2 read the image, dims 1 and 3 are q(z|x) = N(0, 1) always."""
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 4, 4),
            "latent_dim": 4,
            "encoder": {"name": "mlp", "hidden_dims": []},
            "decoder": {"name": "mlp", "hidden_dims": [8]},
        }
    )
    model = VAE(cfg)
    with torch.no_grad():
        enc = model.encoder.net[0]  # Linear(16 -> 8): 4 means, then 4 log-variances
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[0, :8] = 1.0  # mean of dim 0: sum of the top half of the image
        enc.weight[2, 8:] = -2.0  # mean of dim 2: the bottom half
        enc.bias[4 + 0] = -2.0  # confident posteriors on the active dims
        enc.bias[4 + 2] = -2.0
    return model.eval()


def test_active_units_find_the_live_dimensions_and_kl_is_zero_on_dead_ones():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (300, 1, 4, 4), dtype=torch.uint8, generator=gen)
    stats = posterior_statistics(model_with_dead_dims(), ImageDataset(images, None, "r", None), batch_size=64)
    assert stats.active.tolist() == [True, False, True, False]
    assert stats.active_units == 2 and stats.images == 300
    assert stats.mean_variance[1] == 0 and stats.mean_variance[3] == 0
    torch.testing.assert_close(stats.kl_per_dim[[1, 3]], torch.zeros(2, dtype=torch.float64))
    assert (stats.kl_per_dim[[0, 2]] > 0.5).all()
    # The variance of dim 0's mean is known: sum of 8 pixels, each uniform on {0..255}/255.
    expected = 8 * ((256**2 - 1) / 12) / 255**2
    assert abs(float(stats.mean_variance[0]) - expected) / expected < 0.2
    summary = stats.summary()
    assert summary["active_units"] == 2 and len(summary["kl_per_dim"]) == 4
    assert summary["kl_total"] == sum(stats.kl_per_dim.tolist())


def test_threshold_is_burdas_default_and_configurable():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8, generator=gen)
    ds = ImageDataset(images, None, "r", None)
    model = model_with_dead_dims()
    assert posterior_statistics(model, ds).threshold == 0.01
    assert posterior_statistics(model, ds, threshold=1e6).active_units == 0


def test_a_prior_that_does_not_factorise_has_a_total_kl_but_no_per_dimension_kl():
    """A VampPrior is a mixture over whole latent vectors: the KL does not split by dimension, so the
    statistics give the (one-sample) total and no per-dimension list, instead of failing."""
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 4, 4),
            "latent_dim": 4,
            "encoder": {"name": "mlp", "hidden_dims": [8]},
            "decoder": {"name": "mlp", "hidden_dims": [8]},
            "prior": {"name": "vamp", "components": 5},
        }
    )
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    stats = posterior_statistics(VAE(cfg), ImageDataset(images, None, "r", None))
    assert stats.kl_per_dim is None
    assert stats.summary()["kl_per_dim"] is None
    assert torch.isfinite(torch.tensor(stats.kl_total))
    assert stats.mean_variance.shape == (4,)
