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
