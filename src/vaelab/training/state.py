"""What changes while a run trains -- the model, its EMA, Adam, the schedules, the loss scaler, the update
guard and how far the run got -- built fresh or from a :class:`Checkpoint`, and saved back into one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel

from vaelab.models.vae import VAE
from vaelab.training import distributed as D
from vaelab.training.checkpoint import Checkpoint, RankState
from vaelab.training.ema import build_ema
from vaelab.training.epoch_data import EpochRandomness
from vaelab.training.run_config import RunConfig
from vaelab.training.running_means import RunningMeans
from vaelab.training.schedules import TrainingClock, build_lr_scheduler
from vaelab.training.setup import build_optimizer
from vaelab.training.stability import UpdateGuard, check_finite
from vaelab.training.step import build_scaler


@dataclass
class TrainState:
    """The run's mutable state. ``epochs_done`` whole epochs and ``step`` updates are behind it, with
    ``train_seconds`` of training time over all its launches."""

    model: VAE
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    guard: UpdateGuard
    objective: Any = None  # set by the loop once built from the model; saved when it has state
    epochs_done: int = 0
    step: int = 0
    train_seconds: float = 0.0
    clock: TrainingClock = field(default_factory=TrainingClock)  # what a time-following schedule reads

    @classmethod
    def build(
        cls, config: RunConfig, batches_per_epoch: int, device: torch.device, saved: Checkpoint | None
    ) -> TrainState:
        """A new run's state (the model initialised from the seeded RNG), or ``saved``'s."""
        tc = config.train
        model = VAE(config.model).to(device)
        optimizer = build_optimizer(model, config)
        # Built before the optimiser's state is loaded: LambdaLR records the base lr when it is created.
        clock = TrainingClock(saved.train_seconds if saved is not None else 0.0)
        scheduler = build_lr_scheduler(optimizer, tc, tc.max_steps or tc.epochs * batches_per_epoch, clock)
        scaler, guard = build_scaler(tc, device), UpdateGuard(tc, model.parameters())
        if saved is not None:
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
            if saved.scheduler is not None:
                scheduler.load_state_dict(saved.scheduler)
            if saved.scaler:  # empty when loss scaling was off (or the checkpoint predates it)
                scaler.load_state_dict(saved.scaler)
            guard.load_state_dict(saved.guard)
        ema = build_ema(model, tc.ema_decay)  # after loading: an EMA switched on at a resume starts here
        if ema is not None and saved is not None and saved.ema is not None:
            ema.load_state_dict(saved.ema)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        state = cls(model, ema, optimizer, scheduler, scaler, guard, clock=clock)
        if saved is not None:
            state.epochs_done, state.step, state.train_seconds = saved.epoch, saved.step, saved.train_seconds
        return state

    def save(
        self,
        path: Path,
        ctx: D.DistContext,
        *,
        batch: int,
        sums: RunningMeans,
        rng: EpochRandomness,
        seconds: float,
    ) -> None:
        """Checkpoint after ``batch`` batches of the epoch after ``epochs_done`` (0: at an epoch's end),
        with ``seconds`` of training time. Collective (every rank calls it): each rank checks the
        weights and sends its RNG states and partial ``sums``; rank 0 writes."""
        stateful = isinstance(self.objective, nn.Module)
        modules = {
            "model": self.model,
            "EMA model": self.ema,
            "objective": self.objective if stateful else None,
        }
        check_finite(modules, "a checkpoint")  # all ranks stop together
        cuda_rng = torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None
        mine = RankState(rng=torch.get_rng_state(), sums=sums.state_dict(), cuda_rng=cuda_rng)
        ranks = D.gather_objects(mine, ctx)
        if not ctx.is_main:
            return
        Checkpoint(
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            epoch=self.epochs_done,
            batch=batch,
            step=self.step,
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            guard=self.guard.state_dict(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            binarize_rng=rng.binarize.get_state(),
            ranks=ranks,  # type: ignore[arg-type]
            world_size=ctx.world_size,
            train_seconds=seconds,
            objective=self.objective.state_dict() if stateful else {},
        ).save(path)


def resume_inside_epoch(
    saved: Checkpoint, ctx: D.DistContext, rng: EpochRandomness, sums: RunningMeans
) -> None:
    """Continue the epoch ``saved`` stopped in: this rank's RNG states and partial sums, and the shared
    binarisation generator, as they were at the checkpoint."""
    mine = saved.ranks[ctx.rank]
    torch.set_rng_state(mine.rng)
    if mine.cuda_rng is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(mine.cuda_rng, ctx.device)
    if saved.binarize_rng is not None:
        rng.binarize.set_state(saved.binarize_rng)
    sums.load_state_dict(mine.sums)
