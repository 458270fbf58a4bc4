"""A run's metrics: ``metrics.jsonl`` (one JSON object per epoch, mirrored to TensorBoard), read back
and rewritten, and the loss-curve plot drawn from them.

They sit in the run directory the training loop writes, beside the rest of it::

    RUN/config.yaml        resolved configuration          RUN/meta.json      seed, versions, machine
    RUN/metrics.jsonl      one JSON object per epoch        RUN/tensorboard/   the same scalars + grids
    RUN/steps.jsonl        per-step scalars of objectives that log them (GAN losses, logits, weights)
    RUN/checkpoint.pt      latest state (atomic)            RUN/model/         latest saved model
    RUN/model-best/        the saved model of the epoch with the best validation -ELBO (train.keep_best)
    RUN/samples/epoch_NNN.png, RUN/reconstructions/epoch_NNN.png, RUN/loss_curve.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaelab.io.atomic import atomic_write, atomic_write_text

METRICS_NAME = "metrics.jsonl"
STEPS_NAME = "steps.jsonl"


def read_metrics(run_dir: str | Path, name: str = METRICS_NAME) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (or ``steps.jsonl``); a torn last line (a crash mid-append) is ignored."""
    path = Path(run_dir) / name
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_metrics(run_dir: str | Path, rows: list[dict[str, Any]], name: str = METRICS_NAME) -> None:
    """Rewrite ``metrics.jsonl`` (or ``steps.jsonl``) atomically (used on resume to drop rows past the
    checkpoint)."""
    atomic_write_text(Path(run_dir) / name, "".join(json.dumps(r) + "\n" for r in rows))


class MetricsLogger:
    """Appends one JSON line per record and mirrors numeric values to TensorBoard when available."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_NAME
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
            except ImportError:  # TensorBoard is a dependency, but a broken install must not stop training
                self._tb = None

    def log(self, row: dict[str, Any], step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(key.replace("_", "/", 1) if "_" in key else key, value, step)
            self._tb.flush()

    def log_step(self, row: dict[str, float], step: int) -> None:
        """One training step's scalars: a line of ``steps.jsonl`` and TensorBoard scalars under step/."""
        with open(self.run_dir / STEPS_NAME, "a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                self._tb.add_scalar(f"step/{key}", value, step)

    def image(self, tag: str, grid_hwc: Any, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, grid_hwc, step, dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_loss_curve(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Plot train and validation negative ELBO (and KL) per epoch to a PNG; None if nothing to plot."""
    rows = [r for r in rows if "epoch" in r and "train_loss" in r]
    if not rows:
        return None
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay untouched

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train loss (-ELBO)")
    if "val_neg_elbo" in rows[0]:
        ax1.plot(epochs, [r["val_neg_elbo"] for r in rows], marker="s", label="validation -ELBO")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("nats per image")
    ax1.set_title("Negative ELBO")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [r["train_kl"] for r in rows], marker="o", label="KL (train)")
    ax2.plot(epochs, [-r["train_log_px_z"] for r in rows], marker="o", label="-log p(x|z) (train)")
    ax2.set_xlabel("epoch")
    ax2.set_title("ELBO terms")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return path
