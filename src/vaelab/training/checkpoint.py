"""Training checkpoints: everything a resumed run needs, in one :class:`Checkpoint`, one file, written
atomically.

Saved with ``torch.save`` and read back only with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers: a checkpoint someone hands you cannot run code. The file
holds :meth:`Checkpoint.to_state_dict`; version 1 files (written before the GradScaler's state and
the named metric sums were added) are still read, so runs started by an earlier vaelab resume.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import CheckpointError
from vaelab.io.atomic import atomic_write
from vaelab.training.running_means import TERMS
from vaelab.training.stability import UpdateGuard

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class RankState:
    """What one process needs to continue inside an epoch: its torch RNG states (the
    reparameterisation noise) and its partial sums of the epoch's metrics."""

    rng: torch.Tensor
    sums: dict[str, float]
    cuda_rng: torch.Tensor | None = None

    def to_state_dict(self) -> dict[str, Any]:
        state = {"rng": self.rng, "sums": self.sums}
        return state if self.cuda_rng is None else {**state, "cuda_rng": self.cuda_rng}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RankState:
        sums = state["sums"]
        if isinstance(sums, torch.Tensor):  # version 1: one vector, the terms then the images
            sums = dict(zip((*TERMS, "images"), sums.tolist(), strict=True))
        return cls(rng=state["rng"], sums=dict(sums), cuda_rng=state.get("cuda_rng"))


@dataclass
class Checkpoint:
    """The state of a run after ``epoch`` whole epochs and ``batch`` batches of the next (0 at an
    epoch's end), ``step`` optimisation steps in all.

    The data position (``epoch``, ``batch``) and ``binarize_rng`` replay the epoch's batches; ``ranks``
    hold each process's RNG and partial sums; the rest are the state dicts of the model, its EMA copy,
    Adam, the learning-rate scheduler, the fp16 GradScaler (empty when loss scaling is off), the
    update guard's counters and the objective's own state (the adversarial objective's discriminator,
    its Adam and counters; empty for the others).
    """

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epoch: int
    batch: int
    step: int
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] = field(default_factory=dict)
    guard: dict[str, float] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] | None = None
    binarize_rng: torch.Tensor | None = None
    ranks: list[RankState] = field(default_factory=list)
    world_size: int = 1
    train_seconds: float = 0.0
    objective: dict[str, Any] = field(default_factory=dict)  # an objective's own state (a discriminator)

    def to_state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only (what ``weights_only`` loads); None fields are left out."""
        state = {k: v for k, v in vars(self).items() if v is not None and k != "ranks"}
        return {"version": CHECKPOINT_VERSION, **state, "ranks": [r.to_state_dict() for r in self.ranks]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Checkpoint:
        """The checkpoint in ``state`` (version 1 or 2)."""
        guard = state.get("guard", {})
        if isinstance(guard, list):  # version 1: the counters in UpdateGuard.FIELDS order
            guard = dict(zip(UpdateGuard.FIELDS, guard, strict=True))
        return cls(
            model=state["model"],
            optimizer=state["optimizer"],
            epoch=int(state["epoch"]),
            batch=int(state["batch"]),
            step=int(state["step"]),
            scheduler=state.get("scheduler"),
            scaler=dict(state.get("scaler", {})),  # version 1 had none: loss scaling starts afresh
            guard=dict(guard),
            ema=state.get("ema"),
            binarize_rng=state.get("binarize_rng"),
            ranks=[RankState.from_state_dict(r) for r in state.get("ranks", [])],
            world_size=int(state.get("world_size", 1)),
            train_seconds=float(state.get("train_seconds", 0.0)),
            objective=dict(state.get("objective", {})),
        )

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (see :func:`save_checkpoint`)."""
        return save_checkpoint(path, self.to_state_dict())

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read ``path`` safely, or raise ``CheckpointError`` saying what is wrong with it."""
        state = load_checkpoint(path)
        try:
            return cls.from_state_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{path} is a vaelab checkpoint with missing or malformed parts: {exc!r}"
            ) from None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint's ``state`` atomically: a crash mid-write leaves the previous one intact."""
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
    """A checkpoint's state dict, read safely (weights_only), or ``CheckpointError`` saying what is
    wrong. :meth:`Checkpoint.load` turns it into a :class:`Checkpoint`."""
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
    if not isinstance(state, dict) or state.get("version") not in READABLE_VERSIONS:
        found = state.get("version") if isinstance(state, dict) else None
        raise CheckpointError(
            f"{path} is not a vaelab checkpoint this version can read (version {found!r}; it reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))})."
        )
    return state
