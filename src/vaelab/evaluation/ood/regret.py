"""Likelihood regret (Xiao et al. 2020): how much the ELBO rises when the posterior of one image is
optimised (mean and log-scale, Adam, ``steps`` steps) instead of read off the encoder. Xiao et al.
optimise the encoder's weights per image; here its output, for a batch at once. An image like the
training data is already encoded near its optimum; an unfamiliar one gains a lot."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from vaelab.models.parts.kl import layer_kl
from vaelab.models.vae import VAE


def likelihood_regret(model: VAE, x: torch.Tensor, steps: int = 20, lr: float = 0.1) -> torch.Tensor:
    """ELBO(optimised posterior) - ELBO(encoder's posterior), per image, with the same 4 fixed
    draws of the noise for both (so the gain is not sampling noise)."""
    with torch.no_grad():
        q = model.encode(x)
        mean0, log_std0 = q.mean.detach(), q.stddev.log().detach()
    eps = torch.randn((4, *mean0.shape), device=x.device)
    prior = model.prior()
    tiled = x.repeat(4, 1, 1, 1)

    def elbo(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        z = mean + log_std.exp() * eps
        posterior = Independent(Normal(mean, log_std.exp()), 1)
        log_px_z = model.px_z(z.reshape(-1, z.shape[-1])).log_prob(tiled).view(4, -1)
        return (log_px_z - layer_kl(posterior, prior, z).kl).mean(0)

    with torch.no_grad():
        before = elbo(mean0, log_std0)
    mean, log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    optimizer = torch.optim.Adam([mean, log_std], lr=lr)
    best = before.clone()
    for _ in range(steps):
        value = elbo(mean, log_std)
        best = torch.maximum(best, value.detach())
        # Gradients of the posterior's parameters only: the model's weights get none (and keep
        # their flags), so concurrent requests in the server never see them change.
        mean.grad, log_std.grad = torch.autograd.grad(-value.sum(), [mean, log_std])
        optimizer.step()
    with torch.no_grad():
        best = torch.maximum(best, elbo(mean, log_std))
    return (best - before).double()
