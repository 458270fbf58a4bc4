"""Latent priors fitted after training: ``gmm`` (the cheap baseline), ``flow`` (RealNVP), ``diffusion``
(DDPM trained, DDIM sampled) and ``two_stage`` (Dai & Wipf's second VAE). One registry, one interface
(:class:`FittedPrior`: ``sample``, ``log_prob`` where exact, ``tensors``), one file format
(``prior_<kind>.safetensors`` beside the model: the tensors, and the kind, config and fit facts as JSON
in its header; nothing pickled). ``vaelab fit-prior RUN --prior KIND`` fits one and
``vaelab sample RUN --prior KIND`` samples from it; :func:`vaelab.generation.sample` takes any.
For a hierarchical model the fitted prior replaces the top layer's only (the lower layers keep theirs).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from vaelab.generation.priors.base import FittedPrior, LatentCodes, PriorConfig, encode_codes
from vaelab.generation.priors.diffusion import DiffusionPrior
from vaelab.generation.priors.flow import FlowPrior
from vaelab.generation.priors.gmm import GMMPrior
from vaelab.generation.priors.registry import PRIORS, prior_config
from vaelab.generation.priors.store import PRIOR_FORMAT, load_prior, prior_path, save_prior, saved_priors
from vaelab.generation.priors.two_stage import TwoStagePrior
from vaelab.models.vae import VAE


def fit_codes(
    kind: str, codes: LatentCodes, options: Any = None, *, seed: int = 0, progress: bool = False
) -> FittedPrior:
    """A ``kind`` prior fitted to latent codes; ``info`` gets the config's facts and the fit time."""
    config = prior_config(kind, options)
    start, cpu = time.perf_counter(), time.process_time()
    prior = PRIORS[kind].fit(codes, config, seed=seed, progress=progress)
    prior.info = {
        **prior.info,
        "kind": kind,
        "seed": seed,
        "codes": len(codes.mean),
        "fitted_to": "posterior means E[z|x]" if config.source == "mean" else "draws z ~ q(z|x)",
        "fit_seconds": time.perf_counter() - start,
        "fit_cpu_seconds": time.process_time() - cpu,  # this process's CPU time: what a shared core hides
    }
    return prior


def fit_prior(
    model: VAE,
    images: torch.Tensor,
    kind: str = "gmm",
    options: Any = None,
    *,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> FittedPrior:
    """Fit a ``kind`` prior to the top-latent posteriors of ``images`` ((N, C, H, W) in [0, 1]; their
    ``labels`` for a conditional model or a class-conditional prior). ``info["fit_seconds"]`` counts
    the encoding too."""
    config = prior_config(kind, options)  # a bad option fails before the images are encoded
    start = time.perf_counter()
    codes = encode_codes(model, images, labels, num_classes)
    encode_seconds = time.perf_counter() - start
    prior = fit_codes(kind, codes, config, seed=seed, progress=progress)
    prior.info |= {"encode_seconds": encode_seconds, "fit_seconds": time.perf_counter() - start}
    return prior


__all__ = [
    "PRIORS",
    "PRIOR_FORMAT",
    "DiffusionPrior",
    "FittedPrior",
    "FlowPrior",
    "GMMPrior",
    "LatentCodes",
    "PriorConfig",
    "TwoStagePrior",
    "encode_codes",
    "fit_codes",
    "fit_prior",
    "load_prior",
    "prior_config",
    "prior_path",
    "save_prior",
    "saved_priors",
]
