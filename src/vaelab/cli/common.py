"""Pieces shared by the subcommands: user-error types and data options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaelab.config import ConfigError
from vaelab.data import DataError
from vaelab.data.config import DataConfig
from vaelab.models.vae import ModelLoadError, resolve_model_dir
from vaelab.training.checkpoint import CheckpointError

# Errors caused by what the user gave us: printed as one line, exit status 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    ModelLoadError,
    CheckpointError,
    FileExistsError,
    FileNotFoundError,
    ValueError,
    RuntimeError,
)


def add_data_options(p: argparse.ArgumentParser, default_hint: str) -> None:
    """--dataset / --data-dir / --data-path, the same in every command that reads images."""
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="digits (embedded, offline), mnist, fashion-mnist, dsprites (procedural, with factors), "
        "folder, npz or packed; a directory (image folder or packed dataset) or a .npz path also works "
        "and implies the kind. "
        f"Default: {default_hint}.",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="root holding mnist/ and fashion-mnist/ (default: $VAELAB_DATA, else ~/.cache/vaelab/data)",
    )
    p.add_argument("--data-path", metavar="PATH", help="image folder or .npz file for --dataset folder|npz")


def source_fields(source: str) -> dict[str, Any]:
    """Data-config fields for a ``--dataset`` value: a dataset name, a .npz file, or a directory (an
    image folder, or a packed dataset when it holds index.json)."""
    path = Path(source)
    if source.endswith(".npz"):
        return {"name": "npz", "path": str(path)}
    if source not in DataConfig.model_fields["name"].annotation.__args__ and path.is_dir():
        packed = (path / "index.json").is_file()
        return {"name": "packed" if packed else "folder", "path": str(path)}
    return {"name": source}


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The data-config fields the data options set (only those the user gave)."""
    out: dict[str, Any] = source_fields(args.dataset) if args.dataset is not None else {}
    if args.data_dir is not None:
        out["data_dir"] = args.data_dir
    if args.data_path is not None:
        out["path"] = args.data_path
    return out


def add_device_option(
    p: argparse.ArgumentParser, default: str | None = "auto", help: str | None = None
) -> None:
    """--device, the same choices in every command."""
    p.add_argument(
        "--device",
        default=default,
        choices=["auto", "cpu", "cuda", "mps"],
        help=help or f"where to run (default {default}; auto: a GPU if there is one)",
    )


def load_model(args: argparse.Namespace) -> Any:
    """The VAE named by ``args.model`` on the device ``args.device`` asks for."""
    from vaelab.models import VAE
    from vaelab.runtime import resolve_device

    return VAE.from_pretrained(args.model, device=resolve_device(args.device))


def saved_data_config(model_path: str | Path) -> dict[str, Any]:
    """The data config a saved model was trained with (stored beside it), or {} if unknown."""
    directory = resolve_model_dir(model_path)
    try:
        return dict(json.loads((directory / "config.json").read_text()).get("data") or {})
    except (OSError, json.JSONDecodeError):
        return {}
