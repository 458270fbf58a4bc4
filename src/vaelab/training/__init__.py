"""Training: the loop, its config and checkpoints.

``train`` and friends are imported when first used: the loop pulls in evaluation, plotting and
TensorBoard, which ``from vaelab.config import load_config`` (the run config lives in this package)
and the CLI's start-up should not pay for.
"""

from __future__ import annotations

from typing import Any

from vaelab.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaelab.training.config import TrainConfig
from vaelab.training.stability import DivergedError, PoisonedWeightsError

__all__ = [
    "CheckpointError",
    "DivergedError",
    "PoisonedWeightsError",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "prepare_data",
    "save_checkpoint",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in {"TrainResult", "prepare_data", "train"}:
        from vaelab.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'vaelab.training' has no attribute {name!r}")
