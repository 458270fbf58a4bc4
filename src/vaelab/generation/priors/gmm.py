"""Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders", §4):
a Gaussian mixture fitted to the training images' posterior means -- the cheap baseline of the fitted
priors (the paper: MNIST FID 19.21 -> 17.66 for a VAE with a 10-component full-covariance mixture).
Fitted with scikit-learn's ``GaussianMixture`` (EM, seeded); kept as weights (K,), means (K, D) and
full covariances (K, D, D), whatever covariance type was fitted. With ``conditional=true``, one mixture
of K components per class, fitted to that class's codes: C x K components stored class after class, each
class's weights summing to 1."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from vaelab.errors import ModelLoadError, UsageError
from vaelab.generation.priors.base import FittedPrior, LatentCodes, PriorConfig


class GMMPriorConfig(PriorConfig):
    name: Literal["gmm"] = "gmm"
    components: int = Field(default=10, ge=1)
    covariance: Literal["full", "diag", "tied", "spherical"] = "full"
    max_iter: int = Field(default=200, ge=1)


class GMMPrior(FittedPrior):
    """A full-covariance Gaussian mixture over latents: weights (K,), means (K, D), covariances (K, D, D);
    for ``num_classes`` C, C mixtures of K / C components, class c's the c-th block."""

    kind = "gmm"
    config_class = GMMPriorConfig

    def __init__(
        self,
        weights: torch.Tensor,
        means: torch.Tensor,
        covariances: torch.Tensor,
        config: Any = None,
        info: dict[str, Any] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(config or GMMPriorConfig(), int(means.shape[1]), num_classes, info or {})
        self.weights, self.means, self.covariances = weights.double(), means.double(), covariances.double()
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d, d) or k % (num_classes or 1):
            raise ModelLoadError("a GMM prior's weights, means and covariances have inconsistent shapes")

    @property
    def components(self) -> int:
        """Components per mixture (per class for a class-conditional prior)."""
        return int(self.weights.shape[0]) // (self.num_classes or 1)

    @classmethod
    def fit(cls, codes: LatentCodes, config: Any, seed: int = 0, progress: bool = False) -> GMMPrior:
        classes = codes.classes(config)
        z = codes.draw(config.source, torch.Generator().manual_seed(seed)).double().numpy()
        groups = [z] if not classes else [z[(codes.labels == c).numpy()] for c in range(classes)]
        start = time.perf_counter()
        fits = [
            fit_mixture(group, config, seed, f"class {c}" if classes else "")
            for c, group in enumerate(groups)
        ]
        weights, means, cov = (torch.from_numpy(np.concatenate([f[i] for f in fits])) for i in range(3))
        info = {
            "converged": all(f[3]["converged"] for f in fits),
            "iterations": max(f[3]["iterations"] for f in fits),
            "mean_log_likelihood": sum(f[3]["log_likelihood"] for f in fits) / len(z),
            "train_seconds": time.perf_counter() - start,
        }
        return cls(weights, means, cov, config, info, classes or None)

    def _sample(self, n: int, temperature: float, labels: torch.Tensor | None, gen: torch.Generator) -> Any:
        if labels is None:
            comp = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        else:  # one component of each image's class's own mixture
            k = self.components
            comp = torch.multinomial(self.weights.view(-1, k)[labels], 1, generator=gen)[:, 0] + labels * k
        chol = torch.linalg.cholesky(self.covariances)
        eps = torch.randn(n, self.latent_dim, generator=gen, dtype=torch.float64)
        return self.means[comp] + temperature * (chol[comp] @ eps.unsqueeze(2)).squeeze(2)

    def log_prob(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log density of latents (N, D) under the mixture: (N,); for a class-conditional prior, under
        each image's class's mixture given ``labels``, else under the classes' even mix."""
        g, k, d = self.num_classes or 1, self.components, self.latent_dim
        mix = torch.distributions.Categorical(probs=self.weights.view(g, k))
        comp = torch.distributions.MultivariateNormal(
            self.means.view(g, k, d), self.covariances.view(g, k, d, d)
        )
        per_class = torch.distributions.MixtureSameFamily(mix, comp).log_prob(z.double()[:, None])  # (N, g)
        if labels is not None and self.num_classes:
            return per_class.gather(1, torch.as_tensor(labels).long().view(-1, 1))[:, 0]
        return per_class.logsumexp(1) - math.log(g)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    @classmethod
    def from_tensors(cls, config: Any, tensors: dict[str, torch.Tensor], num_classes: int | None) -> Any:
        if set(tensors) != {"weights", "means", "covariances"}:
            raise ModelLoadError(f"a GMM prior holds weights, means and covariances; got {sorted(tensors)}")
        return cls(tensors["weights"], tensors["means"], tensors["covariances"], config, None, num_classes)


def fit_mixture(
    z: np.ndarray, config: Any, seed: int, what: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One mixture of ``config.components`` fitted by EM to codes ``z`` (N, D): weights, means, full
    covariances (whatever the covariance type) and the fit's facts; ``what`` names the codes in errors."""
    from sklearn.mixture import GaussianMixture

    k = config.components
    if len(z) < 2 * k:
        where = f" of {what}" if what else ""
        raise UsageError(
            f"need at least {2 * k} images{where} to fit {k} components; got {len(z)} (fit fewer)"
        )
    gmm = GaussianMixture(k, covariance_type=config.covariance, random_state=seed, max_iter=config.max_iter)
    gmm.fit(z)
    d = z.shape[1]
    cov = np.asarray(gmm.covariances_, dtype=np.float64)
    if config.covariance == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    elif config.covariance == "spherical":
        cov = np.stack([np.eye(d) * c for c in cov])
    elif config.covariance == "tied":
        cov = np.repeat(cov[None], k, axis=0)
    facts = {"converged": bool(gmm.converged_), "iterations": int(gmm.n_iter_)}
    facts["log_likelihood"] = float(gmm.score(z)) * len(z)
    return np.asarray(gmm.weights_, np.float64), np.asarray(gmm.means_, np.float64), cov, facts
