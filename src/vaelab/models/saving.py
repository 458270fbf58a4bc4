"""Saving and loading a VAE: ``config.json`` (the constructor's config) and ``model.safetensors``.

The format is plain JSON and safetensors, so loading never executes anything from the files; a sha256
of the tensors, stored in the safetensors header, catches weights altered or corrupted after saving.
``VAE.save_pretrained`` and ``VAE.from_pretrained`` call these functions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vaelab import __version__
from vaelab.errors import ModelLoadError
from vaelab.io.atomic import atomic_write
from vaelab.models.config import ModelConfig

CONFIG_NAME = "config.json"
# The folders of a run directory that hold a saved model: the last epoch's, and (train.keep_best) the
# epoch's with the best validation -ELBO.
MODEL_DIR = "model"
BEST_MODEL_DIR = "model-best"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "vaelab-vae"
FORMAT_VERSION = 1

Model = TypeVar("Model", bound=nn.Module)


def save_pretrained(
    model: nn.Module, config: ModelConfig, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``config.json`` (``config`` and ``extra`` keys) and ``model.safetensors`` (weights only)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaelab_version": __version__,
        "model": config.model_dump(mode="json"),
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "sha256": tensors_digest(state)})
    with atomic_write(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_config(directory: Path) -> ModelConfig:
    """The validated ``ModelConfig`` of a saved-model directory, or a ModelLoadError saying why not."""
    config_path = directory / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelLoadError(f"{config_path} is not a vaelab model config (format != {FORMAT!r}).")
        return ModelConfig.model_validate(meta["model"])
    except (json.JSONDecodeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{config_path} is not a valid vaelab model config: {exc}") from None


def load_pretrained(
    build: Callable[[ModelConfig], Model], path: str | Path, device: str | torch.device = "cpu"
) -> Model:
    """Rebuild a saved model with ``build(config)`` from a model directory, or from a run directory
    (its ``model/``), load its checked weights, and return it on ``device`` in eval mode."""
    directory = resolve_model_dir(path)
    model = build(read_config(directory))
    weights = directory / WEIGHTS_NAME
    try:
        state = load_file(str(weights))
        with safe_open(str(weights), framework="pt") as f:
            recorded = (f.metadata() or {}).get("sha256")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights} could not be read as safetensors weights: {exc}") from None
    if recorded is not None and recorded != tensors_digest(state):
        raise ModelLoadError(
            f"{weights} was altered or corrupted: its tensors no longer match the sha256 recorded when "
            "it was saved"
        )
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights} does not match its config: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights} does not match its config: {exc}") from None
    return model.to(device).eval()


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order: stored in the
    safetensors header so that a flipped bit in the weights is caught at load time."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def run_dir_of(model_dir: str | Path) -> Path | None:
    """The run directory a saved model belongs to (RUN/model or RUN/model-best -> RUN, where RUN holds
    a run's config.yaml or metrics.jsonl), or None for a bare saved model."""
    model_dir = Path(model_dir)
    parent = model_dir.parent
    is_run = (parent / "config.yaml").is_file() or (parent / "metrics.jsonl").is_file()
    return parent if model_dir.name in (MODEL_DIR, BEST_MODEL_DIR) and is_run else None


def resolve_model_dir(path: str | Path) -> Path:
    """A saved-model directory (has config.json) or a run directory (has model/config.json)."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist: give a run directory or a saved-model directory.")
    raise ModelLoadError(
        f"{path} holds no saved model: expected {path / CONFIG_NAME} or {path / MODEL_DIR / CONFIG_NAME}."
    )
