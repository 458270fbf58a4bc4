"""Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders", §4):
after training, fit a Gaussian mixture to the aggregate posterior -- the posterior means of the training
images -- and sample latents from it instead of from N(0, I).

A VAE's aggregate posterior rarely fills the prior: regions of N(0, I) that no training image encodes
to decode to blurry in-betweens. Sampling where the training data actually lies gives better samples
(the paper: MNIST FID 19.21 -> 17.66 for a VAE with a 10-component full-covariance mixture).

The mixture is fitted with scikit-learn's ``GaussianMixture`` and saved as safetensors beside the model
(``gmm_prior.safetensors``: weights, means, covariances; its header holds the fit's facts) -- never
pickled, so loading it runs no code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vaelab.errors import MissingFileError, ModelLoadError, UsageError
from vaelab.generation.latent import encode_mean
from vaelab.io.atomic import atomic_write
from vaelab.models.vae import VAE, resolve_model_dir

GMM_NAME = "gmm_prior.safetensors"
GMM_FORMAT = "vaelab-gmm-prior"


@dataclass(frozen=True)
class GMMPrior:
    """A full-covariance Gaussian mixture over latents: weights (K,), means (K, D), covariances (K, D, D)."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    info: dict[str, Any]

    @property
    def components(self) -> int:
        return int(self.weights.shape[0])

    def sample(self, n: int, *, temperature: float = 1.0, seed: int | None = None) -> torch.Tensor:
        """``n`` latents (n, D): a component by weight, then its Gaussian (deviation times temperature)."""
        if n < 1:
            raise UsageError(f"number of samples must be at least 1, got {n}")
        if temperature <= 0:
            raise UsageError(f"sampling from a GMM prior needs a temperature > 0, got {temperature}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        comp = torch.multinomial(self.weights.double(), n, replacement=True, generator=gen)
        chol = torch.linalg.cholesky(self.covariances.double())
        eps = torch.randn(n, self.means.shape[1], generator=gen, dtype=torch.float64)
        z = self.means.double()[comp] + temperature * (chol[comp] @ eps.unsqueeze(2)).squeeze(2)
        return z.float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of latents (N, D) under the mixture: (N,)."""
        mix = torch.distributions.Categorical(probs=self.weights.double())
        comp = torch.distributions.MultivariateNormal(self.means.double(), self.covariances.double())
        return torch.distributions.MixtureSameFamily(mix, comp).log_prob(z.double())


def fit_gmm_prior(
    model: VAE,
    images: torch.Tensor,
    *,
    components: int = 10,
    seed: int = 0,
    covariance: str = "full",
    max_iter: int = 200,
) -> GMMPrior:
    """Fit a ``components``-Gaussian mixture (scikit-learn, seeded) to the posterior means of ``images``
    ((N, C, H, W) floats in [0, 1]). A conditional model is not supported: its latents lack the label."""
    from sklearn.mixture import GaussianMixture

    if model.num_classes:
        raise UsageError("fit-prior is for unconditional models (a conditional model's z ignores the label)")
    if components < 1:
        raise UsageError(f"components must be at least 1, got {components}")
    if len(images) < components * 2:
        raise UsageError(
            f"need at least {components * 2} images to fit {components} components; got {len(images)} "
            "(fit fewer components)"
        )
    was_training = model.training
    model.eval()
    z = encode_mean(model, images).double().numpy()
    model.train(was_training)
    gmm = GaussianMixture(
        n_components=components, covariance_type=covariance, random_state=seed, max_iter=max_iter
    )
    gmm.fit(z)
    d = z.shape[1]
    cov = np.asarray(gmm.covariances_, dtype=np.float64)
    if covariance == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    elif covariance == "spherical":
        cov = np.stack([np.eye(d) * c for c in cov])
    elif covariance == "tied":
        cov = np.repeat(cov[None], components, axis=0)
    info = {
        "components": components,
        "covariance_type": covariance,
        "seed": seed,
        "images": len(images),
        "converged": bool(gmm.converged_),
        "iterations": int(gmm.n_iter_),
        "mean_log_likelihood": float(gmm.score(z)),
        "fitted_to": "posterior means E[z|x] of the training images (Ghosh et al. 2020)",
    }
    return GMMPrior(
        torch.from_numpy(np.asarray(gmm.weights_, np.float64)),
        torch.from_numpy(np.asarray(gmm.means_, np.float64)),
        torch.from_numpy(cov),
        info,
    )


def save_gmm_prior(prior: GMMPrior, model_path: str | Path) -> Path:
    """Write ``gmm_prior.safetensors`` into the model's directory (a run directory's ``model/``)."""
    path = resolve_model_dir(model_path) / GMM_NAME
    tensors = {
        "weights": prior.weights.contiguous(),
        "means": prior.means.contiguous(),
        "covariances": prior.covariances.contiguous(),
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": GMM_FORMAT, "info": json.dumps(prior.info)})
    return path


def load_gmm_prior(model_path: str | Path, latent_dim: int | None = None) -> GMMPrior:
    """The mixture saved beside a model; MissingFileError telling how to fit one when there is none."""
    path = resolve_model_dir(model_path) / GMM_NAME
    if not path.is_file():
        raise MissingFileError(f"no GMM prior at {path}: run 'vaelab fit-prior {model_path}' first")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path} could not be read as safetensors: {exc}") from None
    if meta.get("format") != GMM_FORMAT or set(tensors) != {"weights", "means", "covariances"}:
        raise ModelLoadError(f"{path} is not a vaelab GMM prior")
    prior = GMMPrior(tensors["weights"], tensors["means"], tensors["covariances"], json.loads(meta["info"]))
    k, d = prior.means.shape
    if prior.weights.shape != (k,) or prior.covariances.shape != (k, d, d):
        raise ModelLoadError(f"{path} has inconsistent shapes")
    if latent_dim is not None and d != latent_dim:
        raise ModelLoadError(f"{path} is a mixture over {d} latent dimensions; the model has {latent_dim}")
    return prior
