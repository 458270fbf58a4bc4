"""The training loop: one loop for one process and for torchrun, Adam on the objective, a validation
ELBO, grids and checkpoints.

Reproducibility: everything random in epoch ``e`` is seeded from (seed, e) -- the batch order, the
binarisation and each rank's reparameterisation noise (``epoch_data``) -- and a checkpoint holds every
piece of state a resumed run needs (``checkpoint.Checkpoint``: weights, EMA, Adam, the schedules, the
loss scaler, the guard's counters, the generators' states and the position inside the epoch), so a
resumed run continues the same sequence of batches and ends with the same weights as a run that never
stopped (on the CPU, same machine and versions).

The pieces: ``setup`` (data, config, checkpoint to resume, run directory), ``state`` (what training
changes), ``step`` (one update), ``running_means`` (the epoch's metrics), ``epoch_report`` (rank 0's
end-of-epoch work).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vaelab.models.vae import VAE
from vaelab.perf import flush_denormals
from vaelab.runtime import seed_everything
from vaelab.training import distributed as D
from vaelab.training.checkpoint import CHECKPOINT_NAME
from vaelab.training.config import TrainConfig
from vaelab.training.ema import eval_model
from vaelab.training.epoch_data import EpochRandomness, epoch_batches
from vaelab.training.epoch_report import EpochReport, FlopsLog, train_row
from vaelab.training.objective import training_objective
from vaelab.training.run_config import RunConfig
from vaelab.training.running_means import RunningMeans
from vaelab.training.schedules import kl_weight
from vaelab.training.setup import (
    Dataset,
    build_optimizer,
    open_checkpoint,
    prepare_data,
    resolve_condition,
    resolve_model_config,
    start_run_dir,
)
from vaelab.training.signals import TrainingInterrupted, graceful_stop
from vaelab.training.stability import check_finite
from vaelab.training.state import TrainState, resume_inside_epoch
from vaelab.training.step import build_step

__all__ = [  # the set-up helpers stay importable from here, where scripts found them
    "TrainResult",
    "build_optimizer",
    "prepare_data",
    "resolve_condition",
    "resolve_model_config",
    "train",
]

# Steps between reads of the running sums for the progress bar and, under torchrun, between the
# collective checks for a stop signal or a spent time budget (one process checks every step for free).
SYNC_EVERY = 20


@dataclass
class TrainResult:
    """What ``train`` returns: where the run lives, the trained model (the EMA weights when
    ``train.ema_decay`` is on, as saved in ``model/``) and the per-epoch metrics."""

    run_dir: Path
    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: bool = True,
    data: tuple[Dataset, Dataset] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a VAE as ``config`` says, writing everything to ``run_dir``; ``resume`` continues a run there.

    ``progress`` shows a progress bar per epoch; ``log`` prints one summary line per epoch to stderr.
    ``data`` passes ready (train, validation) sets instead of loading ``config.data``.
    ``on_epoch_end(row)`` runs on rank 0 after each epoch's files are written, with the epoch's
    metrics row (as in ``metrics.jsonl``), outside the epoch's timed loop: for notebooks, live
    plots and benchmarks that run other work between epochs. Under torchrun
    every rank calls this; rank 0 alone writes files. SIGTERM / Ctrl-C write a checkpoint and raise
    :class:`TrainingInterrupted`.
    """
    flush = flush_denormals(True) if config.train.flush_denormals else contextlib.nullcontext()
    with flush:  # on every intra-op thread; the previous mode comes back afterwards
        return _train(config, Path(run_dir), resume, progress, log, data, on_epoch_end)


def _train(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    progress: bool,
    log: bool,
    data: tuple[Dataset, Dataset] | None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    """The body of :func:`train`: set up, then the loop."""
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    ctx = D.init_distributed(tc.device)
    train_set, val_set = data if data is not None else prepare_data(config, progress and ctx.is_main)
    config = resolve_model_config(config, train_set.image_shape, train_set)
    saved = open_checkpoint(run_dir, resume, ctx)
    n_batches = -(-len(train_set) // tc.batch_size)
    state = TrainState.build(config, n_batches, ctx.device, saved)
    model, ema = state.model, state.ema
    net = DistributedDataParallel(model) if ctx.distributed else model
    objective = state.objective = training_objective(config, train_set, model, saved, ctx, log)
    run_step = build_step(
        net,
        objective,
        state.optimizer,
        tc,
        ctx.device,
        guard=state.guard,  # clip, or skip a NaN/exploding update on every rank
        ctx=ctx,
        on_update=(lambda: ema.update_parameters(model)) if ema is not None else None,
        scaler=state.scaler,
    )
    report = None
    if ctx.is_main:
        start_run_dir(run_dir, config, train_set, val_set, ctx, saved)
        flops = FlopsLog.count(model, objective, tc, ctx)
        report = EpochReport.open(config, run_dir, model, (train_set, val_set), flops, log)
    path, skip = run_dir / CHECKPOINT_NAME, saved.batch if saved is not None else 0
    labelled = config.model.condition is not None
    finished = False
    try:
        with graceful_stop() as stop:
            while state.epochs_done < tc.epochs and not _budget_spent(state, tc, ctx):
                epoch = state.epochs_done + 1
                rng, sums = EpochRandomness.seeded(tc.seed, epoch, ctx.rank), RunningMeans(ctx.device)
                if skip and saved is not None:  # resume inside this epoch
                    resume_inside_epoch(saved, ctx, rng, sums)
                model.train()
                t0 = time.perf_counter()
                bar = tqdm(total=n_batches, initial=skip, desc=f"epoch {epoch}/{tc.epochs}", leave=False,
                           disable=not (progress and ctx.is_main), dynamic_ncols=True)  # fmt: skip
                out_of_time = False
                for k, x, y, share in epoch_batches(
                    train_set, tc.batch_size, config.data.binarize, rng, ctx, skip=skip, labels=labelled
                ):
                    terms, applied = run_step(x, y, kl_weight(state.step, tc), share)
                    state.step += 1
                    elapsed = state.train_seconds + time.perf_counter() - t0
                    stopping, out_of_time, agreed = _shared_stop(bool(stop), elapsed, state.step, tc, ctx)
                    if agreed is not None:  # the seconds every rank saw last: one learning rate for all
                        state.clock.seconds = agreed
                    state.scheduler.step()  # schedules follow the batch count, skipped updates included
                    if report is not None and getattr(terms, "stats", None):  # per-step GAN scalars
                        report.logger.log_step({k: float(v) for k, v in terms.stats.items()}, state.step)
                    if applied:  # a skipped step's (maybe NaN) terms stay out of the epoch's means
                        sums.add(terms, len(x))
                    bar.update(1)
                    if not bar.disable and (k % SYNC_EVERY == 0 or k == n_batches - 1):
                        _show_means(bar, sums)
                    if tc.max_steps and state.step >= tc.max_steps:
                        break
                    if out_of_time:
                        break
                    if stopping:
                        state.save(path, ctx, batch=k + 1, sums=sums, rng=rng, seconds=elapsed)
                        raise TrainingInterrupted(stop.signum or 15, state.step, str(run_dir))
                    if tc.checkpoint_every and state.step % tc.checkpoint_every == 0 and k + 1 < n_batches:
                        state.save(path, ctx, batch=k + 1, sums=sums, rng=rng, seconds=elapsed)
                bar.close()
                seconds = time.perf_counter() - t0
                state.train_seconds += seconds
                means = sums.means(ctx)  # the epoch's one all-reduce of the metrics
                check_finite({"model": model, "EMA model": ema}, "the saved model")  # on every rank
                last = epoch == tc.epochs or bool(tc.max_steps and state.step >= tc.max_steps) or out_of_time
                if report is not None:
                    row = train_row(state, epoch, means, seconds, config)
                    report(eval_model(model, ema), row, t0, last)
                    if on_epoch_end is not None:
                        on_epoch_end(row)
                # After the epoch's files: a crash in between re-runs from the previous checkpoint.
                state.guard.reset()
                state.epochs_done, skip = epoch, 0
                fresh = RunningMeans(ctx.device)
                state.save(path, ctx, batch=0, sums=fresh, rng=rng, seconds=state.train_seconds)
                if out_of_time:
                    break
        finished = True
    finally:
        if report is not None:
            report.logger.close()
        # DDP's reducer keeps the process group alive; freeing it before the group is destroyed
        # (and after every rank got here) keeps gloo's threads from dying at interpreter exit.
        net = None
        D.shutdown(ctx, wait=finished)
    final = eval_model(model, ema)  # the weights that were saved: the EMA's when it is on
    final.eval()
    return TrainResult(run_dir=run_dir, model=final, history=report.history if report is not None else [])


def _budget_spent(state: TrainState, tc: TrainConfig, ctx: D.DistContext) -> bool:
    """Whether ``train.max_steps`` or ``train.max_minutes`` is used up, as all ranks see it."""
    if tc.max_steps and state.step >= tc.max_steps:
        return True
    return bool(tc.max_minutes) and D.any_rank(state.train_seconds >= tc.max_minutes * 60, ctx)


def _show_means(bar: tqdm, sums: RunningMeans) -> None:
    """The progress bar's running loss, reconstruction term and KL (a sync: every few steps)."""
    means = sums.local_means()
    shown = {"loss": means["loss"], "rec": -means["log_px_z"], "kl": means["kl"]}
    bar.set_postfix({name: f"{value:.2f}" for name, value in shown.items()}, refresh=False)


def _shared_stop(
    signalled: bool, elapsed: float, step: int, tc: TrainConfig, ctx: D.DistContext
) -> tuple[bool, bool, float | None]:
    """(a stop was signalled, the time budget is spent, the training seconds every rank agrees on), as
    every rank sees them: every step for one process, and every ``SYNC_EVERY`` steps under torchrun (one
    all-reduce for the three; the slowest rank's seconds), None for the seconds in between."""
    out_of_time = bool(tc.max_minutes) and elapsed >= tc.max_minutes * 60
    if not ctx.distributed:
        return signalled, out_of_time, elapsed
    if step % SYNC_EVERY:
        return False, False, None
    stopping, spent, seconds = D.max_ranks([float(signalled), float(out_of_time), elapsed], ctx)
    return bool(stopping), bool(spent), seconds
