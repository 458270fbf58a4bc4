"""Generation: new images from the prior, and reconstructions of given images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from vaelab.generation.conditional import balanced_labels
from vaelab.models.guidance import check_guidance, guided_decode
from vaelab.models.vae import VAE

if TYPE_CHECKING:
    from vaelab.generation.priors import FittedPrior


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def sample(
    model: VAE,
    n: int,
    *,
    temperature: float | Sequence[float] = 1.0,
    seed: int | None = None,
    batch_size: int = 1024,
    labels: torch.Tensor | None = None,
    prior: FittedPrior | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """``n`` images in [0, 1], shape (n, C, H, W): z ~ p(z) with std scaled by ``temperature``, decoded.

    ``temperature`` is one number for every stochastic layer or a list with one per layer, top first
    (``model.num_stochastic_layers`` of them); 0 takes the prior's mean, so the images are then the
    deterministic mean path. The same ``seed`` gives the same images on the same machine, whatever
    ``batch_size`` is (for a hierarchical model, whose lower layers draw their noise batch by batch,
    for the same ``batch_size``). A conditional model draws the classes ``labels`` (n,) asks for
    (default: all classes, balanced). ``prior`` replaces the model's prior of the top latent by one
    fitted after training (``vaelab.generation.priors``: gmm, flow, diffusion, two_stage), sampled at
    the top temperature; a hierarchical model's lower layers still draw from their own priors. A
    class-conditional fitted prior takes the ``labels`` too (default: all its classes, balanced), also
    for an unconditional model, whose decoder then never sees them. ``guidance`` w is classifier-free
    guidance for a conditional model trained with label dropout (1: none; above 1: more typical of each
    class; see ``vaelab.models.guidance``); any other model refuses w != 1.
    """
    if n < 1:
        raise ValueError(f"number of samples must be at least 1, got {n}")
    temps = model.layer_temperatures(temperature)  # validates: one per layer, finite, >= 0
    check_guidance(model, guidance)  # before any work
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    classes = model.num_classes or (prior.num_classes if prior is not None else None)
    if classes and labels is None:
        labels = balanced_labels(n, list(range(classes)))
    if labels is not None:
        labels = torch.as_tensor(labels)
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} samples")
    if prior is not None:
        prior_labels = labels if prior.num_classes else None
        z = prior.sample(n, temperature=temps[0], labels=prior_labels, seed=seed).to(model.device)
        if not model.num_classes and prior.num_classes:
            labels = None  # the classes were the prior's: an unconditional decoder takes none
    else:
        z = model.prior.sample(n, temps[0], generator=gen)
    if labels is not None:
        labels = labels.to(model.device)
    out = [
        guided_decode(
            model,
            z[i : i + batch_size],
            None if labels is None else labels[i : i + batch_size],
            temperature=temps,
            generator=gen,
            guidance=guidance,
        )
        for i in range(0, n, batch_size)
    ]
    return torch.cat(out).cpu()


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def reconstruct(
    model: VAE, images: torch.Tensor, batch_size: int = 1024, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Reconstructions (posterior mean, decoded) of images in [0, 1], shape (N, C, H, W); a conditional
    model needs the images' ``labels``."""
    out = [
        model.reconstruct(
            images[i : i + batch_size].to(model.device),
            None if labels is None else labels[i : i + batch_size].to(model.device),
        )
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).cpu()


def save_samples_npz(path: str, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """Write samples as ``images``: uint8 (N, H, W, C) (and ``labels``: int64) in an .npz file."""
    from vaelab.io.atomic import atomic_write
    from vaelab.io.images import to_uint8_nhwc

    arrays: dict[str, np.ndarray] = {"images": to_uint8_nhwc(images)}
    if labels is not None:
        arrays["labels"] = labels.cpu().numpy().astype(np.int64)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
