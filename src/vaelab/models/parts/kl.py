"""The KL of a stochastic layer: the one place vaelab computes it, per example and per dimension.

Every stochastic layer of a VAE (its top latent, and each lower layer of a hierarchical decoder) is a
posterior q and a prior p over the same event; :func:`layer_kl` gives the KL between them, so the
ELBO, free bits, the importance weights and the per-dimension statistics of evaluation all read the
same numbers. :func:`diagonal_gaussian` builds the layers' Gaussians with their log-variance guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence


def diagonal_gaussian(
    mean: torch.Tensor, logvar: torch.Tensor, logvar_range: tuple[float, float], event_dims: int
) -> Independent:
    """N(mean, exp(logvar)) over the last ``event_dims`` dimensions.

    The log-variance is clamped to ``logvar_range`` when the distribution is built, so one bad batch
    cannot give exp(1000) = inf (the guard of diffusers' DiagonalGaussianDistribution).
    """
    std = torch.exp(0.5 * logvar.clamp(*logvar_range))
    return Independent(Normal(mean, std, validate_args=False), event_dims)


@dataclass
class LayerKL:
    """One stochastic layer's KL(q || p), in nats."""

    kl: torch.Tensor  # (*batch,): one number per example (per sample and example with k samples)
    # (*batch, *event): the closed-form KL of each dimension when q and p factorise over them into
    # pairs torch.distributions knows (diagonal Gaussians); None otherwise, or when ``sampled``.
    per_dim: torch.Tensor | None = None


def _factorise_alike(q: Distribution, p: Distribution) -> bool:
    """Whether q and p are ``Independent`` over the same number of event dimensions."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return False
    return q.reinterpreted_batch_ndims == p.reinterpreted_batch_ndims


def factorwise_kl(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """Closed-form KL of each factor of ``Independent`` q and p with the same event dimensions,
    shape (*batch, *event); None where they do not factorise alike or the pair has no closed form."""
    if not _factorise_alike(q, p):
        return None
    assert isinstance(q, Independent) and isinstance(p, Independent)
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


def layer_kl(q: Distribution, p: Distribution, z: torch.Tensor, *, sampled: bool = False) -> LayerKL:
    """KL(q || p) of one stochastic layer at its draw ``z``.

    Closed form where torch.distributions has one (then, for factorised q and p, the sum of the
    per-dimension terms, which is exactly what ``kl_divergence`` of the ``Independent`` pair computes);
    else the single-sample estimate log q(z) - log p(z) (a VampPrior). ``sampled``: always that
    estimate, as importance weights need (log p(x, z) - log q(z|x) at the z actually drawn).
    """
    if not sampled:
        per_dim = factorwise_kl(q, p)
        if per_dim is not None:
            assert isinstance(q, Independent)
            return LayerKL(per_dim.sum(tuple(range(-q.reinterpreted_batch_ndims, 0))), per_dim)
        try:
            return LayerKL(kl_divergence(q, p))
        except NotImplementedError:
            pass
    if _factorise_alike(q, p):
        # Differences per dimension, then their sum: log q(z) and log p(z) of a large latent map are
        # each thousands of nats, and their difference after summing would keep only ~1e-4 of it.
        assert isinstance(q, Independent) and isinstance(p, Independent)
        log_ratio = q.base_dist.log_prob(z) - p.base_dist.log_prob(z)
        return LayerKL(log_ratio.sum(tuple(range(-q.reinterpreted_batch_ndims, 0))))
    return LayerKL(q.log_prob(z) - p.log_prob(z))
