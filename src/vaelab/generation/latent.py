"""Walking the latent space: posterior means, interpolation, traversals, per-dimension KL, a 2-D PCA map.

These are the operations a person uses to look into a trained VAE (the web app calls them, and so can
a notebook). They take and return plain tensors; images are (N, C, H, W) floats in [0, 1], latents
(N, latent_dim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vaelab.errors import UsageError
from vaelab.models.vae import VAE

InterpolationMode = Literal["linear", "slerp"]


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def encode_mean(model: VAE, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Posterior means E[z|x] of images in [0, 1], (N, latent_dim), on the CPU: the point a VAE puts x at."""
    out = [
        model.encode(images[i : i + batch_size].to(model.device)).mean
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).cpu() if out else torch.empty(0, model.latent_dim)


def interpolate_latents(
    z_a: torch.Tensor, z_b: torch.Tensor, steps: int, mode: InterpolationMode = "linear"
) -> torch.Tensor:
    """``steps`` latents from ``z_a`` to ``z_b`` (both ends included), shape (steps, latent_dim).

    ``slerp`` follows the great circle between the two directions and interpolates the norm linearly:
    under an N(0, I) prior, straight lines pass near the origin, where typical latents never lie
    (their norm concentrates around sqrt(latent_dim)), so slerp keeps in-between images sharper.
    """
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    if mode not in ("linear", "slerp"):
        raise ValueError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    z_a, z_b = z_a.flatten().float(), z_b.flatten().float()
    t = torch.linspace(0.0, 1.0, steps, device=z_a.device)[:, None]
    if mode == "linear":
        return (1 - t) * z_a + t * z_b
    norm_a, norm_b = z_a.norm(), z_b.norm()
    unit_a, unit_b = z_a / norm_a.clamp_min(1e-12), z_b / norm_b.clamp_min(1e-12)
    omega = torch.arccos((unit_a * unit_b).sum().clamp(-1.0, 1.0))
    if omega < 1e-4:  # (almost) the same direction: slerp's formula divides by sin(omega) ~ 0
        return (1 - t) * z_a + t * z_b
    sin = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / sin
    return direction * ((1 - t) * norm_a + t * norm_b)


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def interpolate(
    model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, mode: InterpolationMode = "linear"
) -> torch.Tensor:
    """Decoded images along the path between the posterior means of two images, (steps, C, H, W)."""
    z = encode_mean(model, torch.stack([x_a.reshape(model.image_shape), x_b.reshape(model.image_shape)]))
    return model.decode(interpolate_latents(z[0], z[1], steps, mode).to(model.device)).cpu()


def traverse_latents(z: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Copies of ``z`` with one dimension set to each of ``values``: (len(dims) * len(values), latent_dim).

    Row-major by dimension: rows ``i * len(values) ... (i + 1) * len(values) - 1`` vary ``dims[i]``.
    """
    z = z.flatten().float()
    if any(d < 0 or d >= z.numel() for d in dims):
        raise ValueError(f"dimensions must lie in [0, {z.numel()}), got {dims}")
    values = values.flatten().float().to(z.device)
    out = z.repeat(len(dims) * len(values), 1)
    for i, d in enumerate(dims):
        out[i * len(values) : (i + 1) * len(values), d] = values
    return out


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def traverse(model: VAE, z: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Decoded traversals: for each of ``dims``, ``z`` with that coordinate swept over ``values``."""
    return model.decode(traverse_latents(z, dims, values).to(model.device)).cpu()


def dims_by_kl(kl: torch.Tensor, k: int | None = None) -> list[int]:
    """Latent dimensions in order of decreasing KL (the most informative first), the first ``k`` of them."""
    order = torch.argsort(kl.flatten(), descending=True, stable=True).tolist()
    return order[: k if k is not None else len(order)]


def attribute_vector(
    model: VAE, images: torch.Tensor, labels: torch.Tensor, source: int, target: int
) -> torch.Tensor:
    """Mean posterior mean of the images labelled ``target`` minus that of those labelled ``source``
    (latent_dim,): the direction that turns one group into the other (Larsen et al. 2016, §5; White 2016).
    """
    labels = torch.as_tensor(labels)
    groups = []
    for name, cls in (("source", source), ("target", target)):
        mask = labels == cls
        if not bool(mask.any()):
            raise UsageError(f"no images labelled {cls} (the {name} group) to average")
        groups.append(encode_mean(model, images[mask]).mean(0))
    return groups[1] - groups[0]


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def latent_arithmetic(
    model: VAE, images: torch.Tensor, vector: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Decode z(x) + s * vector for each image (rows) and each strength s (columns): (N * S, C, H, W).

    Latent arithmetic (Radford et al. 2016; White 2016): with ``vector`` an attribute vector, moving along
    it adds the attribute; s = 0 is the plain reconstruction.
    """
    z = encode_mean(model, images)
    strengths = strengths.flatten().float()
    shifted = z[:, None, :] + strengths[None, :, None] * vector.flatten().float()[None, None, :]
    return model.decode(shifted.reshape(-1, z.shape[1]).to(model.device)).cpu()


@torch.no_grad()  # not inference_mode: callers may feed the results to autograd
def kl_per_dim(model: VAE, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Mean KL(q(z_j|x) || p(z_j)) over images, per latent dimension j, in nats: shape (latent_dim,).

    Dimensions with near-zero KL are unused ("posterior collapse"); those with the most carry what
    the model encodes, so they are the ones worth a slider. Needs a factorised posterior and prior
    with a closed-form KL per factor (true of the diagonal Gaussian and N(0, I) parts).
    """
    if len(images) == 0:
        raise ValueError("kl_per_dim needs at least one image")
    total = torch.zeros(model.latent_dim)
    for i in range(0, len(images), batch_size):
        kl = model.kl_per_dim(model.encode(images[i : i + batch_size].to(model.device)))
        if kl is None:
            raise NotImplementedError(
                "per-dimension KL needs a posterior and prior that factorise over the latent dimensions "
                "with a closed-form KL per factor"
            )
        total += kl.reshape(-1, model.latent_dim).sum(0).cpu()
    return total / len(images)


@dataclass(frozen=True)
class PCAProjection:
    """A 2-D (or k-D) linear map of latents: ``coords = (z - mean) @ components.T``.

    ``to_latent`` maps map coordinates back to the latent space (the point on the PCA plane), so a
    click on the map can be decoded.
    """

    mean: torch.Tensor  # (latent_dim,)
    components: torch.Tensor  # (k, latent_dim), orthonormal rows
    coords: torch.Tensor  # (N, k) the projected latents
    explained_variance_ratio: torch.Tensor  # (k,)

    def to_latent(self, coords: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_dim) for map coordinates (N, k)."""
        return self.mean + coords.float() @ self.components


def project_pca(latents: torch.Tensor, k: int = 2) -> PCAProjection:
    """Principal-component projection of latents (N, latent_dim) onto their ``k`` main directions.

    Exact SVD of the centred matrix (N is a few thousand at most here). Fewer than ``k`` latent
    dimensions or points pad with zero components.
    """
    z = latents.float().cpu()
    if z.dim() != 2 or len(z) == 0:
        raise ValueError(f"project_pca needs latents of shape (N, latent_dim), N >= 1, got {tuple(z.shape)}")
    mean = z.mean(0)
    centred = z - mean
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    components = torch.zeros(k, z.shape[1])
    used = min(k, vh.shape[0])
    components[:used] = vh[:used]
    # SVD signs are arbitrary; fix them (largest loading positive) so the map does not flip between runs.
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True))).squeeze(1)
    components *= torch.where(signs == 0, 1.0, signs)[:, None]
    variance = singular**2
    ratio = torch.zeros(k)
    if variance.sum() > 0:
        ratio[:used] = variance[:used] / variance.sum()
    return PCAProjection(mean, components, centred @ components.T, ratio)
