"""Training checkpoints: model, optimiser and progress in one file, written atomically.

Saved with ``torch.save`` and read back only with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers: a checkpoint someone hands you cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import CheckpointError
from vaelab.io.atomic import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
    except OSError as exc:  # e.g. a full disk: say so, and that nothing was lost
        raise CheckpointError(
            f"could not write checkpoint {path}: {exc}. The previous checkpoint is intact; free space "
            f"and continue with --resume {path.parent}"
        ) from exc
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only) or raise ``CheckpointError`` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: is this a vaelab run directory?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain data (never loaded "
            f"with code execution). Details: {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (version {CHECKPOINT_VERSION}).")
    return state
