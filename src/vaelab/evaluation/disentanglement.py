"""The Mutual Information Gap (MIG, Chen et al. 2018): how well single latent dimensions capture single
ground-truth factors.

For each factor v_k, take the mutual information I(z_j; v_k) of every latent dimension with it; MIG is
the gap between the largest and the second largest, divided by the factor's entropy H(v_k) (so it lies
in [0, 1]), averaged over factors. A factor captured by one dimension alone scores 1; a factor spread
over several dimensions, or not captured at all, scores near 0.

The mutual information of a continuous z_j with a discrete factor is estimated, as in the
disentanglement_lib reference implementation (Locatello et al. 2019), by discretising each dimension of
the posterior means into ``bins`` equal-width bins and counting. (Chen et al. estimate it with the
encoder's q(z|x) instead; the histogram estimate is the one most published tables use.)
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BINS = 20


def discretize(latents: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """(N, D) codes -> (N, D) int64 bin indices, ``bins`` equal-width bins per dimension over its range."""
    out = np.zeros(latents.shape, np.int64)
    for j in range(latents.shape[1]):
        col = latents[:, j]
        edges = np.histogram_bin_edges(col, bins=bins)
        out[:, j] = np.digitize(col, edges[1:-1])
    return out


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats between two (N,) integer arrays, from their joint histogram."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def discrete_entropy(a: np.ndarray) -> float:
    """H(a) in nats of an (N,) integer array."""
    _, counts = np.unique(a, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information_gap(
    latents: torch.Tensor | np.ndarray,
    factors: torch.Tensor | np.ndarray,
    factor_names: tuple[str, ...] | list[str] | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, object]:
    """MIG of codes ``latents`` (N, D) (e.g. posterior means) against integer ``factors`` (N, K).

    Returns ``mig`` (the mean over factors that vary), ``per_factor`` (name -> normalised gap) and the
    full ``mutual_info`` matrix (D x K, nats). Factors that take one value (entropy 0) are skipped.
    """
    z = np.asarray(latents, np.float64)
    v = np.asarray(factors, np.int64)
    if z.ndim != 2 or v.ndim != 2 or len(z) != len(v):
        raise ValueError(f"need latents (N, D) and factors (N, K); got {z.shape} and {v.shape}")
    if z.shape[1] < 2:
        raise ValueError("MIG needs at least 2 latent dimensions (it is a gap between the top two)")
    names = list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(v.shape[1])]
    codes = discretize(z, bins)
    mi = np.array(
        [[discrete_mutual_info(codes[:, j], v[:, k]) for k in range(v.shape[1])] for j in range(z.shape[1])]
    )
    per_factor: dict[str, float] = {}
    for k, name in enumerate(names):
        h = discrete_entropy(v[:, k])
        if h <= 0:
            continue
        top = np.sort(mi[:, k])[::-1]
        per_factor[name] = float((top[0] - top[1]) / h)
    if not per_factor:
        raise ValueError("no factor takes more than one value: MIG is undefined")
    return {
        "mig": float(np.mean(list(per_factor.values()))),
        "per_factor": per_factor,
        "mutual_info": mi.tolist(),
        "bins": bins,
        "images": len(z),
        "estimator": f"histogram of posterior means, {bins} equal-width bins per dimension",
    }
