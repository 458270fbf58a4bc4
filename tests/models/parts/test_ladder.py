"""The hierarchical (ladder) VAE: per-layer KLs, importance weights and tempered sampling."""

import pytest
import torch
from torch.distributions import kl_divergence

from vaelab.models import VAE, ModelConfig


def ladder_model(seed: int = 0) -> VAE:
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 8, 8),
            "latent_dim": 4,
            "encoder": {"name": "resnet", "channels": [6, 8]},
            "decoder": {"name": "ladder", "channels": [8, 6], "latent_layers": [2, 1], "latent_channels": 2},
        }
    )
    torch.manual_seed(seed)
    model = VAE(cfg)
    # Move the zero-initialised prior heads off zero so the layers' priors differ from N(0, I).
    with torch.no_grad():
        for layer in model.decoder.latents.modules():
            if hasattr(layer, "prior_net"):
                layer.prior_net[-1].weight.normal_(0, 0.3)
    return model


def test_layer_kls_add_up_to_the_total_kl():
    model = ladder_model()
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    out = model(x)
    assert model.num_stochastic_layers == 4 and out.kl_layers.shape == (6, 4)
    torch.testing.assert_close(out.kl_layers.sum(1), out.kl)
    torch.testing.assert_close(out.elbo, out.log_px_z - out.kl)
    # the top layer's term is the analytic KL against the prior part
    torch.testing.assert_close(out.kl_layers[:, 0], kl_divergence(out.posterior, model.prior()))
    assert (out.kl_layers > 0).all()


def test_importance_weighted_estimate_is_finite_and_above_the_elbo():
    model = ladder_model().eval()
    x = (torch.rand(12, 1, 8, 8) > 0.5).float()
    torch.manual_seed(0)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 32)
        elbo = model(x.repeat(32, 1, 1, 1)).elbo.view(32, 12).mean(0)
    iw = torch.logsumexp(log_w, 0) - torch.log(torch.tensor(32.0))
    assert torch.isfinite(iw).all()
    assert iw.mean() > elbo.mean()
    # one-sample log weights average to the ELBO (analytic KLs) within Monte Carlo error
    mc = log_w.mean(0)
    assert abs(mc.mean() - elbo.mean()) < 4 * log_w.std(0).mean() / 32**0.5


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_k_samples_of_an_image_weigh_as_k_copies_of_it_with_one_sample_each(memory_format):
    """With k samples per image the posteriors read each image's features once (shared over the
    samples); the weights must be those of the image repeated k times, the same draws in the same
    order, where every row reads its own copy of the features."""
    model = ladder_model().eval().to(memory_format=memory_format)
    x = (torch.rand(5, 1, 8, 8) > 0.5).float().contiguous(memory_format=memory_format)
    with torch.no_grad():
        torch.manual_seed(3)
        shared = model.log_importance_weights(x, 4)
        torch.manual_seed(3)
        copies = model.log_importance_weights(x.repeat(4, 1, 1, 1), 1).view(4, 5)
    torch.testing.assert_close(shared, copies, rtol=1e-5, atol=1e-4)


def test_temperature_zero_is_the_deterministic_mean_path():
    model = ladder_model().eval()
    a = model.sample(3, 0.0, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, 0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, model.decode(torch.zeros(3, 4)), rtol=0, atol=0)
    # the same seed repeats; a different temperature of only the lowest layer changes the images
    t1 = model.sample(3, [1, 1, 1, 1], generator=torch.Generator().manual_seed(5))
    t1_again = model.sample(3, [1, 1, 1, 1], generator=torch.Generator().manual_seed(5))
    t_low = model.sample(3, [1, 1, 1, 0.2], generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(t1, t1_again, rtol=0, atol=0)
    assert not torch.equal(t1, t_low)


def test_temperature_errors_name_the_problem():
    model = ladder_model()
    with pytest.raises(ValueError, match="4 stochastic layers"):
        model.sample(2, [1.0, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        model.sample(2, -1.0)


def test_ladder_config_errors():
    from pydantic import ValidationError

    from vaelab.models.parts.ladder import LadderDecoderConfig

    with pytest.raises(ValidationError, match="one count of stochastic layers per stage"):
        LadderDecoderConfig(channels=(8, 4), latent_layers=(1,))
    with pytest.raises(ValidationError, match="at least one stochastic layer"):
        LadderDecoderConfig(channels=(8, 4), latent_layers=(0, 0))


def test_validation_reports_the_kl_of_each_layer():
    from vaelab.data import ImageDataset
    from vaelab.evaluation import evaluate_elbo

    model = ladder_model()
    images = (torch.rand(10, 1, 8, 8) > 0.5).to(torch.uint8) * 255
    val = evaluate_elbo(model, ImageDataset(images, None, "t", None), batch_size=4)
    assert len(val["kl_layers"]) == 4
    assert sum(val["kl_layers"]) == pytest.approx(val["kl"])
