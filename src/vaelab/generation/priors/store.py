"""Fitted priors on disk: ``prior_<kind>.safetensors`` in the model's directory, the tensors and, in the
header, the format, kind, latent size, classes, config and fit facts as JSON. Loading runs no code and
refuses a prior whose latent size is not the model's. The older ``gmm_prior.safetensors`` (before
the other priors) is still read as the ``gmm`` prior."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vaelab.errors import MissingFileError, ModelLoadError
from vaelab.generation.priors.base import FittedPrior
from vaelab.generation.priors.registry import PRIORS, prior_config
from vaelab.io.atomic import atomic_write
from vaelab.models.vae import resolve_model_dir

PRIOR_FORMAT = "vaelab-latent-prior"
LEGACY_GMM = ("gmm_prior.safetensors", "vaelab-gmm-prior")


def prior_path(model_path: str | Path, kind: str) -> Path:
    """Where the ``kind`` prior of a model (a run directory or a model directory) is kept."""
    return resolve_model_dir(model_path) / f"prior_{kind}.safetensors"


def save_prior(prior: FittedPrior, model_path: str | Path) -> Path:
    """Write ``prior`` beside the model (atomically; it replaces an earlier prior of the same kind)."""
    path = prior_path(model_path, prior.kind)
    meta = {
        "format": PRIOR_FORMAT,
        "kind": prior.kind,
        "latent_dim": str(prior.latent_dim),
        "num_classes": str(prior.num_classes or 0),
        "config": prior.config.model_dump_json(),
        "info": json.dumps(prior.info, default=str),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in prior.tensors().items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path} could not be read as safetensors: {exc}") from None
    return meta, tensors


def load_prior(model_path: str | Path, kind: str, latent_dim: int | None = None) -> FittedPrior:
    """The ``kind`` prior saved beside a model; MissingFileError saying how to fit one when there is
    none, ModelLoadError when the file is not such a prior or its latent size is not ``latent_dim``."""
    prior_config(kind)  # an unknown kind: ConfigError naming the kinds
    path = prior_path(model_path, kind)
    legacy = path.parent / LEGACY_GMM[0]
    if kind == "gmm" and not path.is_file() and legacy.is_file():
        meta, tensors = _read(legacy)
        if meta.get("format") != LEGACY_GMM[1]:
            raise ModelLoadError(f"{legacy} is not a vaelab GMM prior")
        meta = {"kind": "gmm", "config": "{}", "info": meta.get("info", "{}"), "num_classes": "0"}
        path = legacy
    elif not path.is_file():
        raise MissingFileError(
            f"no {kind} prior at {path}: run 'vaelab fit-prior {model_path} --prior {kind}' first"
        )
    else:
        meta, tensors = _read(path)
        if meta.get("format") != PRIOR_FORMAT or meta.get("kind") != kind:
            raise ModelLoadError(f"{path} is not a vaelab {kind} prior (format {meta.get('format')!r})")
    try:
        config = PRIORS[kind].config_class.model_validate_json(meta["config"])
        prior = PRIORS[kind].from_tensors(config, tensors, int(meta["num_classes"]) or None)
        prior.info = json.loads(meta["info"])
    except (KeyError, ValueError, ValidationError, RuntimeError) as exc:
        raise ModelLoadError(f"{path} could not be rebuilt as a {kind} prior: {exc}") from None
    if latent_dim is not None and prior.latent_dim != latent_dim:
        raise ModelLoadError(
            f"{path} is a {kind} prior over {prior.latent_dim} latent dimensions; the model has {latent_dim}"
        )
    return prior


def saved_priors(model_path: str | Path) -> list[str]:
    """The kinds of prior saved beside a model, in the registry's order (the older GMM file counts)."""
    legacy = (resolve_model_dir(model_path) / LEGACY_GMM[0]).is_file()
    return [k for k in PRIORS if prior_path(model_path, k).is_file() or (k == "gmm" and legacy)]
