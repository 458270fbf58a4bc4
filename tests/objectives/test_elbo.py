import pytest
import torch

from vaelab.models import VAE, ModelConfig
from vaelab.objectives import ELBOConfig, build_objective


def test_elbo_is_reconstruction_minus_kl_and_beta_weights_kl():
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=2))
    out = model(torch.rand(4, 1, 6, 6))
    terms = build_objective(ELBOConfig())(out)
    torch.testing.assert_close(terms.elbo, out.log_px_z - out.kl)
    torch.testing.assert_close(terms.loss, -(out.log_px_z - out.kl).mean())
    beta = build_objective(ELBOConfig(beta=4.0))(out)
    torch.testing.assert_close(beta.loss, -(out.log_px_z - 4.0 * out.kl).mean())
    torch.testing.assert_close(beta.elbo, terms.elbo)  # the reported ELBO is always beta = 1


def test_kl_weight_from_the_schedule_multiplies_beta_and_the_logged_elbo_stays_unweighted():
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=2))
    out = model(torch.rand(4, 1, 6, 6))
    terms = build_objective(ELBOConfig(beta=2.0))(out, torch.tensor(0.25))
    torch.testing.assert_close(terms.loss, -(out.log_px_z - 0.5 * out.kl).mean())
    torch.testing.assert_close(terms.elbo, out.log_px_z - out.kl)
    zero = build_objective(ELBOConfig())(out, 0.0)  # warm-up's first step: reconstruction only
    torch.testing.assert_close(zero.loss, -out.log_px_z.mean())


def test_free_bits_floor_each_dimensions_batch_mean_kl_at_lambda():
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=4))
    out = model(torch.rand(8, 1, 6, 6))
    per_dim = out.kl_groups.mean(0)
    lam = float(per_dim.median())  # some dimensions below the floor, some above
    terms = build_objective(ELBOConfig(free_bits=lam))(out)
    expected = -(out.log_px_z.mean() - torch.clamp(per_dim, min=lam).sum())
    torch.testing.assert_close(terms.loss, expected)
    assert terms.loss > build_objective(ELBOConfig())(out).loss  # the floor only ever adds
    # below the floor a dimension's KL gets no gradient: nothing to gain by shrinking it further
    kl_dims = out.kl_groups
    grad = torch.autograd.grad(terms.loss, kl_dims, retain_graph=True)[0]
    assert torch.all(grad[:, per_dim < lam] == 0) and torch.all(grad[:, per_dim > lam] != 0)
    pooled = build_objective(ELBOConfig(free_bits=lam, free_bits_groups=2))(out)
    groups = per_dim.reshape(2, 2).sum(-1)
    torch.testing.assert_close(pooled.loss, -(out.log_px_z.mean() - groups.clamp(min=lam).sum()))


def test_free_bits_with_groups_that_do_not_divide_the_latents_is_a_clear_error():
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=4))
    out = model(torch.rand(2, 1, 6, 6))
    with pytest.raises(ValueError, match="free_bits_groups=3 must divide the 4"):
        build_objective(ELBOConfig(free_bits=0.1, free_bits_groups=3))(out)
