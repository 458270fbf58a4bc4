"""The ELBO and its two terms measured over a dataset split, in nats per image (the training
objective itself is ``vaelab.objectives.elbo``; this module only averages what the model returns)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from vaelab.data import ImageDataset, batches, to_float
from vaelab.models.vae import VAE, VAEOutput
from vaelab.runtime import forked_rng


def _outputs(
    model: VAE, dataset: ImageDataset, batch_size: int, binarize: str, generator: torch.Generator | None
) -> Iterator[VAEOutput]:
    """The model's forward pass over ``dataset`` in order, in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        for images, labels in batches(dataset, batch_size, shuffle=False):
            y = labels.to(model.device) if model.num_classes and labels is not None else None
            yield model(to_float(images, binarize, generator=generator).to(model.device), y)
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate_elbo(
    model: VAE,
    dataset: ImageDataset,
    *,
    batch_size: int = 1000,
    binarize: str = "none",
    seed: int = 0,
) -> dict[str, Any]:
    """Mean ELBO, log p(x|z) and KL over ``dataset`` with one posterior sample per image.

    With ``binarize="dynamic"`` the images are binarised once with a generator seeded by ``seed``, so
    the number is the same every time it is computed (the literature's fixed binarised test set).
    """
    gen = torch.Generator().manual_seed(seed)
    totals = torch.zeros(3, dtype=torch.float64)
    layer_totals: torch.Tensor | None = torch.zeros(model.num_stochastic_layers, dtype=torch.float64)
    n = 0
    for out in _outputs(model, dataset, batch_size, binarize, gen):
        totals += torch.stack([out.elbo.sum(), out.log_px_z.sum(), out.kl.sum()]).double().cpu()
        if out.kl_layers is None:  # a KL that does not split by layer: report none rather than zeros
            layer_totals = None
        elif layer_totals is not None:
            layer_totals += out.kl_layers.sum(0).double().cpu()
        n += out.elbo.shape[0]
    if n == 0:
        return {"elbo": float("nan"), "log_px_z": float("nan"), "kl": float("nan"), "n": 0}
    elbo, log_px_z, kl = (totals / n).tolist()
    result: dict[str, Any] = {"elbo": elbo, "log_px_z": log_px_z, "kl": kl, "n": n}
    if layer_totals is not None and model.num_stochastic_layers > 1:  # each layer's rate, top first
        result["kl_layers"] = (layer_totals / n).tolist()
    return result


@torch.inference_mode()
def elbo_per_image(
    model: VAE, dataset: ImageDataset, *, batch_size: int = 1000, seed: int = 0
) -> dict[str, torch.Tensor]:
    """(N,) float64 ELBO, log p(x|z) and KL of each image (pixels as stored, /255), one posterior sample
    each, drawn in a forked RNG seeded with ``seed``: the per-image values behind a standard error."""
    device = model.device
    parts: dict[str, list[torch.Tensor]] = {"elbo": [], "log_px_z": [], "kl": []}
    with forked_rng(device):
        torch.manual_seed(seed)
        for out in _outputs(model, dataset, batch_size, "none", None):
            for name, value in (("elbo", out.elbo), ("log_px_z", out.log_px_z), ("kl", out.kl)):
                parts[name].append(value.double().cpu())
    return {k: torch.cat(v) if v else torch.empty(0, dtype=torch.float64) for k, v in parts.items()}
