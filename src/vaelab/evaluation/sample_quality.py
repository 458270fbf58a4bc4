"""Sample quality in a feature space: Frechet distance, precision and recall.

* Frechet distance (Heusel et al. 2017): the 2-Wasserstein distance between Gaussians fitted to the
  real and generated features, ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)). Its standard
  error here is a bootstrap over both feature sets. It is biased upwards for small sets, so compare
  numbers only at the same sample sizes.
* Precision and recall (Kynkaanniemi et al. 2019): each point's k-th nearest-neighbour distance
  within its own set gives a ball; the union of the balls estimates that set's manifold. Precision
  is the fraction of generated points inside the real manifold (quality), recall the fraction of
  real points inside the generated manifold (coverage). Standard errors are binomial, with the
  radii held fixed.
* Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
  Models"): balls around the real points only (k-NN radii in the real set, k = 5 as in the paper),
  so that outlying samples cannot inflate a fake manifold. Density is the mean number of real balls
  each sample falls in, divided by k (about 1 when the two distributions match; above 1 where samples
  crowd the dense regions); coverage is the fraction of real points whose ball holds at least one
  sample (1 - 2^-k = 0.969 expected for two sets of the same size from one distribution). Standard
  errors with the radii held fixed: density's over the samples, coverage's binomial over real points.

The metrics take features, whatever space they come from; ``features.py`` supplies vaelab's own,
``inception_fid`` the optional Inception-v3 FID through torch-fidelity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.io.images import to_uint8

DEFAULT_K = 3  # Kynkaanniemi et al.'s choice for precision and recall
DENSITY_COVERAGE_K = 5  # Naeem et al.'s choice for density and coverage


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, d) features, float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, d) features for a covariance; got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2), which avoids the complex round-off of a
    general matrix square root.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    tr_cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross)


def frechet_distance_features(
    real: torch.Tensor, fake: torch.Tensor, *, bootstrap: int = 20, seed: int = 0
) -> tuple[float, float]:
    """Frechet distance between two (N, d) feature sets and its bootstrap standard error."""
    fd = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    if bootstrap < 2:
        return fd, float("nan")
    rng = np.random.default_rng(seed)
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    reps = [
        frechet_distance(
            *gaussian_stats(r[rng.integers(0, len(r), len(r))]),
            *gaussian_stats(f[rng.integers(0, len(f), len(f))]),
        )
        for _ in range(bootstrap)
    ]
    return fd, float(np.std(reps, ddof=1))


def knn_radii(features: torch.Tensor, k: int = DEFAULT_K, chunk: int = 1024) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    f = torch.as_tensor(features, dtype=torch.float32)
    if f.shape[0] <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii; got {f.shape[0]}")
    out = []
    for i in range(0, f.shape[0], chunk):
        d = torch.cdist(f[i : i + chunk], f)
        # The smallest distance is the point itself (0); the (k+1)-th smallest is its k-th neighbour.
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def ball_counts(
    points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which points lie in which balls (point j is in ball i when |p_j - c_i| <= radii[i]):
    (M,) int64, the number of balls each point lies in, and (N,) bool, whether each ball holds a point."""
    p = torch.as_tensor(points, dtype=torch.float32)
    c = torch.as_tensor(centres, dtype=torch.float32)
    r = torch.as_tensor(radii, dtype=torch.float32)
    counts, occupied = torch.zeros(p.shape[0], dtype=torch.int64), []
    # Rows are centres, as in ``knn_radii``: a set compared with itself gets bitwise the distances its
    # radii came from, so a ball's k-th neighbour is never lost to the rounding of cdist.
    for i in range(0, c.shape[0], chunk):
        inside = torch.cdist(c[i : i + chunk], p) <= r[i : i + chunk, None]
        counts += inside.sum(dim=0)
        occupied.append(inside.any(dim=1))
    return counts, (torch.cat(occupied) if occupied else torch.zeros(0, dtype=torch.bool))


def inside_manifold(
    points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """(M,) bool: is each point within ``radii[i]`` of some ``support[i]`` (the union of balls)."""
    return ball_counts(points, support, radii, chunk)[0] > 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = DEFAULT_K) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with binomial standard errors."""
    precision = float(inside_manifold(fake, real, knn_radii(real, k)).double().mean())
    recall = float(inside_manifold(real, fake, knn_radii(fake, k)).double().mean())
    n_fake, n_real = len(fake), len(real)
    return {
        "precision": precision,
        "precision_se": math.sqrt(precision * (1 - precision) / n_fake),
        "recall": recall,
        "recall_se": math.sqrt(recall * (1 - recall) / n_real),
        "k": k,
    }


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DENSITY_COVERAGE_K) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) with standard errors, the real k-NN radii held fixed."""
    counts, covered = ball_counts(fake, real, knn_radii(real, k))
    per_sample = counts.double() / k
    coverage = float(covered.double().mean())
    return {
        "density": float(per_sample.mean()),
        "density_se": float(per_sample.std() / math.sqrt(len(fake))) if len(fake) > 1 else float("nan"),
        "coverage": coverage,
        "coverage_se": math.sqrt(coverage * (1 - coverage) / len(real)),
        "k_density_coverage": k,
    }


def compare_features(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    k_density_coverage: int = DENSITY_COVERAGE_K,
    bootstrap: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """FD (with bootstrap SE), precision, recall, density and coverage of ``fake`` features against
    ``real`` ones."""
    fd, fd_se = frechet_distance_features(real, fake, bootstrap=bootstrap, seed=seed)
    return {
        "fd": fd,
        "fd_se": fd_se,
        **precision_recall(real, fake, k),
        **density_coverage(real, fake, k_density_coverage),
        "real_images": len(real),
        "fake_images": len(fake),
    }


def inception_fid(
    real_images: torch.Tensor, fake_images: torch.Tensor, weights_path: str | Path | None
) -> dict[str, Any]:
    """Optional Inception-v3 FID through torch-fidelity, from a local weights file.

    Uses torch-fidelity's ``inception-v3-compat`` extractor (the TF-FID network and resizing) with
    ``feature_extractor_weights_path`` (``weights-inception-2015-12-05-6726825d.pth``), so nothing is
    downloaded. Returns {"available": False, "reason": ...} when the weights or the package (which
    needs torchvision) are missing; images are (N, C, H, W) floats in [0, 1] or uint8.
    """
    if weights_path is None:
        return {"available": False, "reason": "no --inception-weights file given"}
    if not Path(weights_path).is_file():
        return {"available": False, "reason": f"weights file {weights_path} does not exist"}
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as exc:  # ImportError, or torchvision failing inside torch-fidelity's imports
        return {
            "available": False,
            "reason": f"torch-fidelity could not be imported ({type(exc).__name__}: {exc})",
        }
    extractor = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path)
    ).eval()

    @torch.inference_mode()
    def embed(images: torch.Tensor) -> torch.Tensor:
        feats = []
        for i in range(0, len(images), 100):
            x = to_uint8(images[i : i + 100])
            if x.shape[1] == 1:  # the network reads RGB
                x = x.expand(-1, 3, -1, -1)
            feats.append(extractor(x)[0].double().reshape(len(x), -1))
        return torch.cat(feats)

    fd = frechet_distance(*gaussian_stats(embed(real_images)), *gaussian_stats(embed(fake_images)))
    return {
        "available": True,
        "fid": fd,
        "feature_space": "Inception-v3 pool3 (2048-d), torch-fidelity inception-v3-compat",
        "real_images": len(real_images),
        "fake_images": len(fake_images),
    }
