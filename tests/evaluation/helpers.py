"""Models with known answers for the evaluation tests."""

from __future__ import annotations

import math

import torch

from vaelab.data import ImageDataset
from vaelab.models import VAE, ModelConfig


def linear_gaussian_vae(
    sigma: float = 0.5, scales: tuple[float, float] = (1.5, 0.8), seed: int = 0
) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A VAE whose marginal is exact: z ~ N(0, I_2), x | z ~ N(W z + b, sigma^2 I_4) on 1x2x2 images.

    p(x) = N(b, W W^T + sigma^2 I). W has orthogonal columns, so the true posterior
    N(S W^T (x - b) / sigma^2, S) with S = (I + W^T W / sigma^2)^-1 is diagonal and the linear encoder
    is set to it exactly. Returns (model, W, b).
    """
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen))
    w = q[:, :2] * torch.tensor(scales)
    b = torch.randn(4, generator=gen) * 0.3
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 2, 2),
            "latent_dim": 2,
            "encoder": {"name": "mlp", "hidden_dims": []},
            "decoder": {"name": "mlp", "hidden_dims": []},
            "likelihood": {"name": "gaussian", "variance": "fixed", "sigma": sigma},
        }
    )
    model = VAE(cfg)
    s = torch.linalg.inv(torch.eye(2) + w.T @ w / sigma**2)
    a = s @ w.T / sigma**2  # posterior mean = a (x - b)
    with torch.no_grad():
        dec = model.decoder.net[0]
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        enc = model.encoder.net[0]
        enc.weight.zero_()
        enc.weight[:2] = a
        enc.bias.zero_()
        enc.bias[:2] = -a @ b
        enc.bias[2:] = torch.log(torch.diagonal(s))
    return model.eval(), w, b


def exact_log_px(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; b, W W^T + sigma^2 I) per image, float64."""
    cov = (w @ w.T + sigma**2 * torch.eye(4)).double()
    dist = torch.distributions.MultivariateNormal(b.double(), covariance_matrix=cov)
    return dist.log_prob(x.flatten(1).double())


def analytic_elbo(
    model: VAE, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sigma: float
) -> torch.Tensor:
    """The exact ELBO of the linear-Gaussian model under its (possibly perturbed) encoder, float64."""
    q = model.encode(x)
    m, var = q.mean.double(), q.variance.double()
    w, b, xf = w.double(), b.double(), x.flatten(1).double()
    resid = xf - (m @ w.T + b)
    d = xf.shape[1]
    trace = (var * (w**2).sum(0)).sum(1)  # tr(W diag(var) W^T)
    rec = -0.5 * d * math.log(2 * math.pi * sigma**2) - ((resid**2).sum(1) + trace) / (2 * sigma**2)
    kl = 0.5 * (var + m**2 - 1 - var.log()).sum(1)
    return rec - kl


def sample_data(w: torch.Tensor, b: torch.Tensor, sigma: float, n: int, seed: int = 1) -> torch.Tensor:
    """``n`` images drawn from the linear-Gaussian model, shape (n, 1, 2, 2)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=gen)
    x = z @ w.T + b + sigma * torch.randn(n, 4, generator=gen)
    return x.view(n, 1, 2, 2)


def random_images_vae(n: int) -> tuple[VAE, ImageDataset]:
    """An untrained 6x6 VAE (seed 0) and ``n`` random grey images for it."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=3)).eval()
    images = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8)
    return model, ImageDataset(images, None, "rand", None)
