import pytest
import torch

from vaelab.models import VAE, ModelConfig


def vamp_model(components: int) -> VAE:
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 6, 6),
            "latent_dim": 3,
            "encoder": {"name": "mlp", "hidden_dims": [8]},
            "decoder": {"name": "mlp", "hidden_dims": [8]},
            "prior": {"name": "vamp", "components": components},
        }
    )
    torch.manual_seed(0)
    return VAE(cfg)


def test_vamp_with_one_pseudo_input_is_the_encoder_gaussian_there():
    model = vamp_model(1)
    z = torch.randn(7, 3)
    q = model.encode(model.prior.pseudo_inputs())
    torch.testing.assert_close(model.prior().log_prob(z), q.log_prob(z))


def test_vamp_density_is_the_average_of_its_components():
    model = vamp_model(4)
    z = torch.randn(5, 3)
    qs = model.encode(model.prior.pseudo_inputs())  # batch of 4 Gaussians
    expected = torch.logsumexp(qs.log_prob(z[:, None, :]), dim=1) - torch.log(torch.tensor(4.0))
    torch.testing.assert_close(model.prior().log_prob(z), expected)


def test_vamp_samples_follow_the_density():
    model = vamp_model(2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = model.prior.sample(20000, generator=gen)
        comp = model.prior.components()
    torch.testing.assert_close(z.mean(0), comp.loc.mean(0), atol=0.03, rtol=0)
    # temperature 0: only the two component means remain
    z0 = model.prior.sample(50, 0.0, generator=gen)
    assert {tuple(r) for r in z0.round(decimals=5).tolist()} <= {
        tuple(r) for r in comp.loc.round(decimals=5).tolist()
    }


def test_vamp_kl_is_the_one_sample_estimate_and_the_pseudo_inputs_learn():
    model = vamp_model(3)
    x = torch.rand(4, 1, 6, 6)
    torch.manual_seed(1)
    out = model(x)
    expected = out.posterior.log_prob(out.z) - model.prior().log_prob(out.z)
    torch.testing.assert_close(out.kl, expected)
    out.kl.sum().backward()
    assert model.prior.pseudo_logits.grad is not None and model.prior.pseudo_logits.grad.abs().sum() > 0


def test_unbound_vamp_prior_says_so():
    from vaelab.models.parts.priors import VampPrior, VampPriorConfig

    with pytest.raises(RuntimeError, match="not bound"):
        VampPrior(VampPriorConfig(components=2), 3, (1, 4, 4))()
