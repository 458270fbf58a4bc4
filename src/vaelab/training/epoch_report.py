"""Rank 0's work after each epoch: the metrics row (training means, speed, FLOPs), validation numbers,
image grids, the saved model, and the row logged to metrics.jsonl, TensorBoard and stderr."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.evaluation.dataset_elbo import evaluate_elbo
from vaelab.evaluation.measure import quick_evaluate
from vaelab.io.images import interleave_rows, make_grid, save_grid
from vaelab.io.metrics import MetricsLogger, plot_loss_curve, read_metrics
from vaelab.models.saving import BEST_MODEL_DIR, CONFIG_NAME, MODEL_DIR
from vaelab.models.vae import VAE
from vaelab.perf import matmul_peak
from vaelab.runtime import derive_seed, forked_rng, peak_rss_mb
from vaelab.training.config import TrainConfig
from vaelab.training.distributed import DistContext
from vaelab.training.health import posterior_health
from vaelab.training.run_config import RunConfig
from vaelab.training.schedules import kl_weight
from vaelab.training.setup import Dataset, first_images
from vaelab.training.state import TrainState
from vaelab.training.step import StepFlops, step_flops

# Epochs at least this long measure the matmul peak again (~0.3 s) for the log's fraction of peak.
PEAK_REFRESH_SECONDS = 10.0


def train_row(
    state: TrainState, epoch: int, means: tuple[dict[str, float], float], seconds: float, config: RunConfig
) -> dict[str, Any]:
    """The metrics row's training part: ``means`` of the epoch's terms over its images, in ``seconds``."""
    means, images = means
    return {
        "epoch": epoch,
        "step": state.step,
        "train_loss": means["loss"],
        "train_elbo": means["elbo"],
        "train_log_px_z": means["log_px_z"],
        "train_kl": means["kl"],
        "train_seconds": seconds,
        "train_minutes": state.train_seconds / 60,  # cumulative over the run and its resumes
        "images_per_s": images / seconds if seconds > 0 else None,
        "lr": state.scheduler.get_last_lr()[0],  # for the next update
        "kl_weight": kl_weight(state.step, config.train),
        **state.guard.summary(),
        **(state.objective.summary() if hasattr(state.objective, "summary") else {}),  # a discriminator's
        "peak_rss_mb": peak_rss_mb(),  # the process's high-water mark so far
    }


@dataclass
class FlopsLog:
    """The log's FLOP columns: the step's counted FLOPs against the best matmul peak measured."""

    flops: StepFlops
    device: torch.device
    processes: int

    @classmethod
    def count(cls, model: VAE, objective: Any, tc: TrainConfig, ctx: DistContext) -> FlopsLog | None:
        """Count one step's FLOPs when ``train.log_flops`` asks; None (with a warning) if that fails."""
        if not tc.log_flops:
            return None
        try:
            return cls(step_flops(model, objective, tc, ctx.device), ctx.device, ctx.world_size)
        except Exception as exc:  # a FLOP count must never stop a run: log without it
            warnings.warn(f"FLOPs not counted ({exc}); the log shows images/s only", stacklevel=2)
            return None

    def columns(self, images_per_s: float, seconds: float) -> dict[str, float]:
        """The FLOP rates at ``images_per_s``, after an epoch of ``seconds``."""
        if seconds >= PEAK_REFRESH_SECONDS:
            # The peak again, keeping the best seen: one timed at a slow moment of a shared machine
            # would overstate every later fraction. Its random matrices come from a forked RNG: the
            # validation that follows draws from the global one, and must not depend on the timing.
            with forked_rng(self.device):
                fresh = matmul_peak(self.flops.precision, self.device, fresh=True)
            self.flops = dataclasses.replace(self.flops, peak=max(self.flops.peak, fresh))
        return self.flops.rates(images_per_s, self.processes)


@dataclass
class EpochReport:
    """Rank 0's end-of-epoch work, set up once per launch; call it with each epoch's row."""

    config: RunConfig
    run_dir: Path
    val_set: Dataset
    grid_z: torch.Tensor  # the sample grid's latents: the same every epoch, to watch progress
    recon_inputs: tuple[torch.Tensor, torch.Tensor | None]  # images (and labels) to reconstruct
    logger: MetricsLogger
    history: list[dict[str, Any]]
    flops: FlopsLog | None
    log: bool

    @classmethod
    def open(
        cls,
        config: RunConfig,
        run_dir: Path,
        model: VAE,
        sets: tuple[Dataset, Dataset],
        flops: FlopsLog | None,
        log: bool,
    ) -> EpochReport:
        """The report for a run in ``run_dir`` whose metrics.jsonl is ready (see ``start_run_dir``)."""
        tc, (train_set, val_set) = config.train, sets
        grid_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "grid"))
        grid_z = model.prior.sample(tc.grid_samples, generator=grid_gen)
        source = val_set if len(val_set) else train_set
        images, labels = first_images(source, tc.grid_reconstructions, grid_gen)
        recon = (images, labels if config.model.condition is not None else None)
        history = read_metrics(run_dir)
        return cls(config, run_dir, val_set, grid_z, recon, MetricsLogger(run_dir), history, flops, log)

    def __call__(self, model: VAE, row: dict[str, Any], started: float, last: bool) -> dict[str, Any]:
        """Complete ``row`` (FLOPs, validation), write grids and the saved model, log it; return it.

        ``model`` is the one to evaluate and save: the EMA copy when train.ema_decay is on.
        ``started`` is the epoch's ``time.perf_counter()`` start, for ``epoch_seconds``."""
        tc, epoch = self.config.train, row["epoch"]
        if self.flops is not None and row["images_per_s"]:
            row.update(self.flops.columns(row["images_per_s"], row["train_seconds"]))
        row.update(self.validate(model, iw=bool(tc.eval_every and (last or epoch % tc.eval_every == 0))))
        if last or epoch % tc.image_every == 0:
            write_grids(model, self.run_dir, epoch, self.grid_z, *self.recon_inputs, self.logger, row["step"])
        snapshot = bool(tc.snapshot_every and (last or epoch % tc.snapshot_every == 0))
        self.save_model(model, row, snapshot, best=tc.keep_best and self.is_best(row))
        row["epoch_seconds"] = time.perf_counter() - started
        self.logger.log(row, row["step"])
        self.history.append(row)
        if last or epoch % max(1, tc.epochs // 20) == 0:
            plot_loss_curve(self.history, self.run_dir / "loss_curve.png")
        if self.log:
            tqdm.write(epoch_line(row, tc.epochs), file=sys.stderr)
        return row

    def validate(self, model: VAE, iw: bool) -> dict[str, Any]:
        """Validation ELBO and its terms, posterior health, per-layer KL, and with ``iw`` the cheap
        importance-weighted evaluation; all on the same seeded binarisation of the validation set."""
        tc, binarize = self.config.train, self.config.data.binarize
        seed = derive_seed(self.config.data.split_seed, "val-binarize")
        val = evaluate_elbo(model, self.val_set, batch_size=tc.eval_batch_size, binarize=binarize, seed=seed)
        out = {"val_elbo": val["elbo"], "val_neg_elbo": -val["elbo"], "val_log_px_z": val["log_px_z"]}
        out["val_kl"] = val["kl"]
        out.update(posterior_health(model, self.val_set, images=tc.eval_images, binarize=binarize, seed=seed))
        if "kl_layers" in val:  # hierarchical models: validation KL of each stochastic layer (1 = top)
            out.update({f"val_kl_layer{i + 1}": kl for i, kl in enumerate(val["kl_layers"])})
        if iw:
            opts = dict(iw_samples=tc.eval_iw_samples, images=tc.eval_images, binarize=binarize, seed=seed)
            out.update(quick_evaluate(model, self.val_set, **opts))
        return out

    def is_best(self, row: dict[str, Any]) -> bool:
        """Whether ``row``'s validation -ELBO is finite and lower than the one of the model kept in
        ``model-best`` (by an earlier epoch, of this launch or an earlier one): the kept model is the
        record, so a run resumed with keep_best newly on, or past an epoch lost to a crash, still
        keeps its best from here on."""
        value = _finite(row.get("val_neg_elbo"))
        if not len(self.val_set) or value is None:
            return False
        kept = kept_best(self.run_dir)
        return kept is None or kept[0] >= row["epoch"] or value < kept[1]

    def save_model(self, model: VAE, row: dict[str, Any], snapshot: bool, best: bool = False) -> None:
        """``run_dir/model`` (and a snapshot, and ``model-best`` when ``best``) with the epoch, step,
        training minutes, validation -ELBO and data config."""
        extra = {"epoch": row["epoch"], "step": row["step"], "train_minutes": row["train_minutes"]}
        # None where it is NaN (no validation set): JSON has no NaN.
        extra["val_neg_elbo"] = _finite(row.get("val_neg_elbo"))
        extra["data"] = self.config.data.model_dump(mode="json")
        model.save_pretrained(self.run_dir / MODEL_DIR, extra=extra)
        if snapshot:
            model.save_pretrained(self.run_dir / "snapshots" / f"epoch-{row['epoch']:04d}", extra=extra)
        if best:
            model.save_pretrained(self.run_dir / BEST_MODEL_DIR, extra=extra)


def kept_best(run_dir: Path) -> tuple[int, float] | None:
    """(epoch, validation -ELBO) of the model ``train.keep_best`` kept in ``run_dir/model-best``, or None."""
    try:
        saved = json.loads((run_dir / BEST_MODEL_DIR / CONFIG_NAME).read_text())
        epoch, value = int(saved["epoch"]), _finite(saved["val_neg_elbo"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if value is None else (epoch, value)


def _finite(value: object) -> float | None:
    """``value`` as a float where it is a finite number, else None (missing, NaN or infinite)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The epoch's summary line on stderr."""
    flops = ""
    if "gflop_per_s" in row:
        flops = f", {row['gflop_per_s']:.0f} GFLOP/s = {row['peak_fraction']:.0%} of peak"
    gan = ""
    if "disc_loss" in row:  # the adversarial objective's discriminator
        gan = f"D loss {row['disc_loss']:.3f} paused {row['disc_paused']} skipped {row['disc_skipped']}  "
    return (
        f"epoch {row['epoch']}/{epochs}  train -ELBO {-row['train_elbo']:.2f}  "
        f"val -ELBO {-row['val_elbo']:.2f}  "
        f"KL {row['val_kl']:.2f}  rec {-row['val_log_px_z']:.2f}  active {row.get('val_active_units', '?')}  "
        f"skipped {row['skipped_updates']}  {gan}({row['train_seconds']:.1f}s, "
        f"{row['images_per_s']:.0f} img/s{flops})"
    )


@torch.no_grad()
def write_grids(
    model: VAE,
    run_dir: Path,
    epoch: int,
    grid_z: torch.Tensor,
    recon_inputs: torch.Tensor,
    recon_labels: torch.Tensor | None,
    logger: MetricsLogger,
    step: int,
) -> None:
    """A sample grid (the same latents every epoch, to watch progress) and inputs over reconstructions.

    For a conditional model the sample grid has one row per class (the same latents in each column).
    """
    was_training = model.training
    model.eval()
    if model.num_classes:
        from vaelab.generation.conditional import class_grid_latents

        per_class = min(len(grid_z), 10)
        z, labels = class_grid_latents(grid_z[:per_class], model.num_classes)
    else:
        z, labels, per_class = grid_z, None, None
    # The same generator state every epoch: a hierarchical model's lower layers draw the same noise too,
    # so the grid shows progress, not resampling (decode_sample is plain decode for one latent layer).
    lower = torch.Generator().manual_seed(0)
    lab = labels.to(model.device) if labels is not None else None
    samples = model.decode_sample(z.to(model.device), lab, generator=lower).cpu()
    nrow = per_class
    save_grid(samples, run_dir / "samples" / f"epoch_{epoch:03d}.png", nrow=nrow)
    labels = recon_labels.to(model.device) if recon_labels is not None else None
    recons = model.reconstruct(recon_inputs.to(model.device), labels).cpu()
    pairs, per_row = interleave_rows(recon_inputs, recons, 8)
    save_grid(pairs, run_dir / "reconstructions" / f"epoch_{epoch:03d}.png", nrow=per_row)
    logger.image("samples", make_grid(samples, nrow=nrow), step)
    logger.image("reconstructions", make_grid(pairs, nrow=per_row), step)
    model.train(was_training)
