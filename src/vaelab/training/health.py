"""Posterior-collapse monitor: active units and the KL of each latent dimension, logged every epoch.

Why: a VAE can reach a good ELBO while most latent dimensions carry nothing -- q(z_u|x) = p(z_u) for
every x (posterior collapse; Bowman et al. 2016). KL warm-up, free bits and cyclical annealing exist
to prevent it, and this is how a run shows whether they did. The numbers come from
``vaelab.evaluation.posterior`` (Burda et al. 2015's active-unit criterion, Var_x E_q[z_u] > 0.01),
on the same fixed, seeded validation images that ``quick_evaluate`` uses.
"""

from __future__ import annotations

from typing import Any

from vaelab.data import ImageDataset, PackedDataset
from vaelab.evaluation.eval_set import fixed_inputs, in_memory, seeded_subset
from vaelab.evaluation.posterior import posterior_statistics
from vaelab.models.vae import VAE


def posterior_health(
    model: VAE, dataset: ImageDataset | PackedDataset, *, images: int, binarize: str, seed: int
) -> dict[str, Any]:
    """``val_active_units`` and ``val_kl_per_dim`` (nats, mean over ``images`` seeded validation images)."""
    inputs = seeded_subset(fixed_inputs(in_memory(dataset, images), binarize, seed), images, seed)
    if len(inputs) == 0:
        return {}
    stats = posterior_statistics(model, inputs)
    health: dict[str, Any] = {"val_active_units": stats.active_units}
    if stats.kl_per_dim is not None:
        health["val_kl_per_dim"] = [round(float(v), 4) for v in stats.kl_per_dim]
    return health
