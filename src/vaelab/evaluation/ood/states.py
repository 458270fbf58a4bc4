"""The density of states (Morningstar et al. 2021, "DoSE"): how typical an image's log-likelihoods are of
held-out images of the training data.

One likelihood, or one ratio of two, ranks images along a single direction, and an image can be unusual
in a way that direction does not see. The density of states keeps log-likelihoods of each image apart
(``STATE_NAMES``), all in nats over the same 8-bit image:

- ``log_p_model``: the VAE's, importance-weighted with K samples (the ``nll`` score's estimate);
- ``log_p_background``: the likelihood ratio's local background model's (local statistics only);
- ``log_p_codec``: a lossless codec's (PNG's), minus its length in nats.

Their joint density over held-out in-distribution images is a Gaussian mixture, fitted by scikit-learn
on the standardised statistics and evaluated with torch.distributions; the score is minus the
log-density of an image's statistics. An image is out of distribution when they are atypical in any
combination: all high (a flat image every model finds easy), the VAE's low against the others (noise;
shapes the VAE never saw), or a codec length that the likelihoods do not account for (printed letters
have a grey-level texture that handwritten digits lack, which a Bernoulli VAE and its background do not
see and PNG does). The background's statistic is used only where it models another space than the
codec (a Bernoulli VAE's binarised pixels, ``used_states``): over 8-bit levels PNG already is a
background over the VAE's own space, and the local model's likelihood of images unlike any it trained
on (flat ones, for a photo model) is an extrapolation that changes with its seed. The density is
fitted once with the background and saved beside it (``states.safetensors``; ``Scorer.fit_states``
computes the statistics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaelab.data import ImageDataset
from vaelab.evaluation.eval_set import seeded_subset

STATE_NAMES = ("log_p_model", "log_p_background", "log_p_codec")  # what Scorer.statistics gives
COMPONENTS = 8  # the mixture's components (fewer for small held-out sets: one per IMAGES_PER_COMPONENT)
IMAGES_PER_COMPONENT = 100
HELD_OUT = 5000  # held-out images the density is fitted on, at most
REG_COVAR = 1e-4  # added to each covariance's diagonal, in units of the statistics' variances


@dataclass
class StatesDensity:
    """A Gaussian mixture over standardised statistics: ``(s - center) / scale`` ~ sum_m w_m N(mu_m, C_m)."""

    names: list[str]
    center: torch.Tensor  # (S,) float64
    scale: torch.Tensor  # (S,)
    weights: torch.Tensor  # (M,)
    means: torch.Tensor  # (M, S)
    covariances: torch.Tensor  # (M, S, S)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mixture = MixtureSameFamily(
            Categorical(probs=self.weights),
            MultivariateNormal(self.means, covariance_matrix=self.covariances),
        )

    @property
    def columns(self) -> list[int]:
        """Where this density's statistics are among ``STATE_NAMES`` (what ``Scorer.statistics`` gives)."""
        return [STATE_NAMES.index(name) for name in self.names]

    def log_prob(self, stats: torch.Tensor) -> torch.Tensor:
        """log-density (B,) of the statistics (B, S) named ``names``; higher is more typical."""
        if stats.shape[-1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} statistics {self.names}; got {stats.shape[-1]}")
        z = (stats.double().cpu() - self.center) / self.scale
        return self._mixture.log_prob(z)

    def tensors(self) -> dict[str, torch.Tensor]:
        keys = ("center", "scale", "weights", "means", "covariances")
        return {k: getattr(self, k).contiguous() for k in keys}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> StatesDensity:
        keys = ("center", "scale", "weights", "means", "covariances")
        return cls(list(info["names"]), **{k: tensors[k].double() for k in keys}, info=info)


def fit_density(
    stats: np.ndarray, names: list[str], components: int = COMPONENTS, seed: int = 0
) -> StatesDensity:
    """The mixture of at most ``components`` full-covariance Gaussians (one per ``IMAGES_PER_COMPONENT``
    images) fitted to held-out statistics (N, S) by scikit-learn's EM."""
    from sklearn.mixture import GaussianMixture

    stats = np.asarray(stats, np.float64)
    if stats.ndim != 2 or stats.shape[1] != len(names):
        raise ValueError(f"expected rows of {len(names)} statistics {names}; got shape {stats.shape}")
    if len(stats) < 2 or not np.isfinite(stats).all():
        raise ValueError(f"need at least 2 finite rows of statistics to fit their density; got {len(stats)}")
    center, scale = stats.mean(0), stats.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    m = max(1, min(components, len(stats) // IMAGES_PER_COMPONENT))
    gmm = GaussianMixture(m, covariance_type="full", reg_covar=REG_COVAR, random_state=seed)
    gmm.fit((stats - center) / scale)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    info = {"names": names, "components": m, "n": len(stats), "seed": seed}
    return StatesDensity(
        names, t(center), t(scale), t(gmm.weights_), t(gmm.means_), t(gmm.covariances_), info
    )


def used_states(background_models_codec_space: bool) -> list[str]:
    """The statistics the density is fitted on: all of ``STATE_NAMES``, but without the background's
    where the background is over the codec's space (8-bit levels: ``Background.uses_codec``)."""
    if background_models_codec_space:
        return [name for name in STATE_NAMES if name != "log_p_background"]
    return list(STATE_NAMES)


def held_out(train: ImageDataset, val_fraction: float, split_seed: int, seed: int = 0) -> ImageDataset:
    """What the density is fitted on: the validation part of the training split that training held out
    (the model's ``val_fraction`` and ``split_seed``), else training images; at most ``HELD_OUT``."""
    part = train.split(val_fraction, split_seed)[1] if val_fraction > 0 else train
    return seeded_subset(part, min(HELD_OUT, len(part)), seed)
