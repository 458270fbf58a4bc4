"""Generation: new images from the prior, and reconstructions of given images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vaelab.models.vae import VAE


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def sample(
    model: VAE,
    n: int,
    *,
    temperature: float | Sequence[float] = 1.0,
    seed: int | None = None,
    batch_size: int = 1024,
) -> torch.Tensor:
    """``n`` images in [0, 1], shape (n, C, H, W): z ~ p(z) with std scaled by ``temperature``, decoded.

    ``temperature`` is one number for every stochastic layer or a list with one per layer, top first
    (``model.num_stochastic_layers`` of them); 0 takes the prior's mean, so the images are then the
    deterministic mean path. The same ``seed`` gives the same images on the same machine, whatever
    ``batch_size`` is.
    """
    if n < 1:
        raise ValueError(f"number of samples must be at least 1, got {n}")
    temps = model.layer_temperatures(temperature)  # validates: one per layer, finite, >= 0
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if not model.hierarchical:
        z = model.prior.sample(n, temps[0], generator=gen)
        out = [model.decode(z[i : i + batch_size]) for i in range(0, n, batch_size)]
    else:  # lower layers draw their noise batch by batch from the same generator
        out = [model.sample(min(batch_size, n - i), temps, generator=gen) for i in range(0, n, batch_size)]
    return torch.cat(out).cpu()


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def reconstruct(model: VAE, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Reconstructions (posterior mean, decoded) of images in [0, 1], shape (N, C, H, W)."""
    out = [
        model.reconstruct(images[i : i + batch_size].to(model.device))
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
