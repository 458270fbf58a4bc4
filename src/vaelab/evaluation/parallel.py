"""The importance-weighted log-likelihood over several CPU processes: the evaluation's batches handed
out one at a time to worker processes, each with its share of the threads.

Why: one process with T threads splits every convolution T ways, and a hierarchical VAE's small
convolutions (4 to 64 channels at 7x7 to 28x28) split poorly, while processes that each run whole
batches share nothing. Measured on 2 cores it does not pay (slower than one process with both
threads: docs/benchmarks.md, evaluation cost); it is meant for machines with more cores. The
numbers do not depend on the split: each batch seeds its own latents from the evaluation's seed
and the batch's number (``dataset_likelihood.estimate_batch``), so one process and four give the same
estimate. Workers start with ``spawn`` (a clean interpreter, no forked thread pools) and rebuild the
model from its config and weights once each.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch
import torch.multiprocessing as mp

from vaelab.data import ImageDataset
from vaelab.errors import UsageError
from vaelab.models.vae import VAE


def threads_per_process(processes: int) -> int:
    """Each worker's threads: this process's torch threads shared out, at least one."""
    return max(1, torch.get_num_threads() // processes)


def sharded_estimates(
    estimate: Callable[..., dict[int, torch.Tensor]],
    model: VAE,
    parts: dict[int, ImageDataset],
    opts: Any,
    processes: int,
    finished: Callable[[int, dict[int, torch.Tensor]], object],
) -> None:
    """``estimate(model, part, opts, number)`` (``dataset_likelihood.estimate_batch``, passed in: this
    module stays below the estimator) for each batch ``parts[number]`` in ``processes`` worker
    processes, one batch per job (a free worker takes the next: none waits on a slower one);
    ``finished(number, estimates)`` in this process as each is done."""
    if model.device.type != "cpu":
        raise UsageError("several evaluation processes are for CPUs; on a GPU evaluate in one process")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    setup = (threads_per_process(processes), model.config, state, estimate)
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_worker, initargs=setup
    ) as pool:
        futures = {pool.submit(_estimate, part, opts, number): number for number, part in parts.items()}
        for job in as_completed(futures):
            finished(futures[job], job.result())


_WORKER: list[Any] = []  # a worker's model and estimator, set once by its initializer


def _start_worker(threads: int, config: Any, state: dict[str, torch.Tensor], estimate: Callable) -> None:
    """A worker's threads (set before any work, in torch and for OpenMP) and its copy of the model."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    model = VAE(config)
    model.load_state_dict(state)
    _WORKER.extend([model.eval(), estimate])


def _estimate(part: ImageDataset, opts: Any, number: int) -> dict[int, torch.Tensor]:
    """One job: the batch ``part``, batch number ``number`` of the evaluation, through the worker's model."""
    model, estimate = _WORKER
    return estimate(model, part, opts, number)
