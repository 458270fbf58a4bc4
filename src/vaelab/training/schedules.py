"""Step schedules: the KL weight (warm-up and cyclical annealing) and the learning rate (warm-up and
cosine decay). Both are pure functions of the optimisation step, so a resumed run follows the same
curve; the learning rate goes through ``torch.optim.lr_scheduler.LambdaLR``, whose state is saved in
the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from vaelab.training.config import TrainConfig


def kl_weight(step: int, tc: TrainConfig) -> float:
    """The KL's weight in [0, 1] for the update number ``step`` (0-based); objective.beta multiplies it.

    Why: early in training the KL term pulls every q(z|x) onto the prior before the decoder has
    learned to use z, and the latents collapse; letting the reconstruction term lead first avoids it.
    "linear" is the warm-up of Sønderby et al. 2016 (LVAE, sec. 2.3): beta = min(1, t / N).
    "cyclical" is Fu et al. 2019 (NAACL), eq. 8-9: within each cycle of N steps beta rises linearly
    over the first ratio * N steps and then stays at 1; after ``kl_cycles`` cycles it stays at 1.
    """
    n = tc.kl_anneal_steps
    if tc.kl_anneal == "none" or n == 0:
        return 1.0
    if tc.kl_anneal == "linear":
        return min(1.0, step / n)
    if tc.kl_cycles and step >= tc.kl_cycles * n:
        return 1.0
    return min(1.0, (step % n) / (tc.kl_anneal_ratio * n))


def lr_factor(
    step: int, warmup: int, total: int, schedule: str, min_ratio: float, done: float | None = None
) -> float:
    """The multiple of the base learning rate for update ``step`` (0-based).

    Warm-up: (step + 1) / warmup for the first ``warmup`` updates, so Adam's early, poorly estimated
    second moments do not meet the full step size (Goyal et al. 2017; Liu et al. 2020, RAdam sec. 3).
    Cosine: from 1 down to ``min_ratio`` between the end of the warm-up and ``total``, then flat
    (SGDR, Loshchilov & Hutter 2017, without restarts); ``done``, when given, is the fraction of the
    decay behind the run instead (the share of its time budget spent).
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup) if done is None else done)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainingClock:
    """Training seconds as the loop last agreed on them, over all launches: what a schedule that
    follows time (``lr_decay_over: minutes``) reads. The loop sets it before each scheduler step."""

    seconds: float = 0.0


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, tc: TrainConfig, planned_steps: int, clock: TrainingClock | None = None
) -> LambdaLR:
    """A LambdaLR stepped once per batch; ``planned_steps`` is the decay length when lr_decay_steps is 0.
    With ``lr_decay_over: minutes`` the decay follows ``clock`` through max_minutes instead."""
    total = tc.lr_decay_steps or planned_steps
    budget = tc.max_minutes * 60 if tc.lr_decay_over == "minutes" else 0.0
    clock = clock or TrainingClock()

    def factor(step: int) -> float:
        done = clock.seconds / budget if budget else None
        return lr_factor(step, tc.lr_warmup_steps, total, tc.lr_schedule, tc.lr_min_ratio, done)

    return LambdaLR(optimizer, factor)
