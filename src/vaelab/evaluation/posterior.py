"""Posterior health: active units (Burda et al. 2015, sec. 5.2) and the KL of each latent dimension.

A latent dimension u is *active* when its posterior mean moves with the data:
A_u = Cov_x(E_{u~q(u|x)}[u]) > 0.01. A collapsed ("dead") dimension has q(u|x) ~ p(u) for every x,
so its mean is constant and its KL is ~0; a healthy VAE spends its KL on the active dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent

from vaelab.data import ImageDataset, batches, to_float
from vaelab.models.vae import VAE

ACTIVE_THRESHOLD = 0.01  # Burda et al.'s threshold on the variance of the posterior mean


@dataclass
class PosteriorStats:
    """Per-dimension statistics of q(z|x) over a dataset."""

    mean_variance: torch.Tensor  # (D,) variance over images of the posterior mean, A_u
    # (D,) mean over images of KL(q(z_u|x) || p(z_u)), nats; None where the prior does not factorise
    # over the dimensions (a VampPrior's mixture), so that no per-dimension KL exists
    kl_per_dim: torch.Tensor | None
    kl_total: float  # mean KL(q(z|x) || p(z)) over images, nats (one-sample estimate if no closed form)
    images: int
    threshold: float = ACTIVE_THRESHOLD

    @property
    def active(self) -> torch.Tensor:
        """(D,) bool: which dimensions are active."""
        return self.mean_variance > self.threshold

    @property
    def active_units(self) -> int:
        return int(self.active.sum())

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers for a report."""
        return {
            "active_units": self.active_units,
            "latent_dim": int(self.mean_variance.numel()),
            "threshold": self.threshold,
            "criterion": "Var_x(E_q[z_u]) > threshold (Burda et al. 2015)",
            "images": self.images,
            "kl_total": self.kl_total,
            "kl_per_dim": None if self.kl_per_dim is None else [round(float(v), 6) for v in self.kl_per_dim],
            "mean_variance_per_dim": [round(float(v), 6) for v in self.mean_variance],
        }


def _kl_per_dim(model: VAE, posterior: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """(B, D) KL of each latent dimension: the model's closed form (``VAE.kl_per_dim``), else, for
    factors with no closed-form KL, the one-sample estimate log q(z_u|x) - log p(z_u) at ``z``; None
    when the prior does not factorise over the dimensions."""
    kl = model.kl_per_dim(posterior)
    if kl is None:
        q = posterior.base_dist if isinstance(posterior, Independent) else posterior
        prior = model.prior()
        p = prior.base_dist if isinstance(prior, Independent) else prior
        log_p = p.log_prob(z)
        if log_p.shape != z.shape:  # one density for the whole vector: no per-dimension split
            return None
        kl = q.log_prob(z) - log_p
    return kl.expand_as(z)


@torch.inference_mode()
def posterior_statistics(
    model: VAE, dataset: ImageDataset, *, batch_size: int = 1000, threshold: float = ACTIVE_THRESHOLD
) -> PosteriorStats:
    """Active units and per-dimension KL of ``model`` over ``dataset`` (pixels as stored, /255)."""
    was_training = model.training
    model.eval()
    means, kls, totals = [], [], []
    for images, labels in batches(dataset, batch_size, shuffle=False):
        y = labels.to(model.device) if model.num_classes and labels is not None else None
        posterior = model.encode(to_float(images.to(model.device), "none"), y)
        mean = posterior.mean
        means.append(mean.double().cpu())
        z = posterior.sample()
        per_dim = _kl_per_dim(model, posterior, z)
        kls.append(None if per_dim is None else per_dim.double().sum(0).cpu())
        totals.append(float(model.kl(posterior, z).double().sum()) if per_dim is None else 0.0)
    model.train(was_training)
    n = len(dataset)
    if n == 0:
        nan = torch.full((model.latent_dim,), float("nan"), dtype=torch.float64)
        return PosteriorStats(nan, nan, float("nan"), 0, threshold)
    all_means = torch.cat(means)
    # Population variance, as in Burda et al.'s covariance over the data set.
    variance = all_means.var(dim=0, unbiased=False)
    if any(k is None for k in kls):
        return PosteriorStats(variance, None, sum(totals) / n, n, threshold)
    kl_dims = torch.stack(kls).sum(0) / n
    return PosteriorStats(variance, kl_dims, float(kl_dims.sum()), n, threshold)
