"""The importance-weighted log-likelihood measured over a dataset: its batches, their seeds, worker
processes, and the journal that lets a long estimate resume (the estimator of one batch is
``likelihood.iw_log_likelihood_batch``).

Every batch seeds its latents from the evaluation's seed and the batch's number, so the estimate of
an image does not depend on how the work was split: in one process or several, in one sitting or
resumed from the journal after a crash, a seed gives the same numbers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vaelab.data import ImageDataset, to_float
from vaelab.evaluation.journal import Journal, journal_key
from vaelab.evaluation.likelihood import (
    DEFAULT_MAX_ELEMENTS,
    LogLikelihood,
    chunk_sizes,
    iw_flops,
    iw_log_likelihood_batch,
    nested_ks,
    samples_per_chunk_cap,
)
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed, forked_rng

Estimates = dict[int, torch.Tensor]  # K' -> (n,) float64 per-image estimates


@dataclass(frozen=True)
class EstimateOptions:
    """How ``estimate_batch`` runs: K, images per batch, the element budget, seed and speed switches."""

    iw_samples: int
    batch_size: int
    max_elements: int
    seed: int
    precision: str
    compile: bool

    def journal_settings(self) -> dict[str, object]:
        """The options that fix the numbers (compiling changes only the speed)."""
        return {k: v for k, v in asdict(self).items() if k != "compile"}


def evaluate_log_likelihood(
    model: VAE,
    dataset: ImageDataset,
    *,
    iw_samples: int = 5000,
    batch_size: int = 100,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    seed: int = 0,
    progress: bool = False,
    precision: str = "fp32",
    compile: bool = False,
    processes: int = 1,
    journal_dir: str | Path | None = None,
) -> LogLikelihood:
    """Importance-weighted log p(x) of every image of ``dataset`` (pixels used as stored, /255).

    Binarise the dataset beforehand (``fixed_inputs``) for the binarised-MNIST protocol. Each batch
    draws its latents in a forked RNG seeded by ``seed`` and the batch's number: the caller's random
    state is untouched. ``precision``, ``compile``: see ``iw_log_likelihood_batch``; ``processes`` > 1
    (CPUs): the batches shared out over that many worker processes, each with its share of the
    threads (``evaluation.parallel``). ``journal_dir``: each finished batch is journalled there
    (``evaluation.journal``) and the batches a journal of the same estimate holds are not run again;
    the result's ``journal`` names the file, to remove once the numbers are safe elsewhere.
    """
    was_training = model.training
    model.eval()
    images = max(1, min(batch_size, max_elements // model.elements_per_sample()))  # one sample each fits
    opts = EstimateOptions(iw_samples, images, max_elements, seed, precision, compile)
    parts = [
        dataset.subset(torch.arange(i, min(len(dataset), i + images))) for i in range(0, len(dataset), images)
    ]
    journal = (
        Journal(journal_dir, journal_key(model, dataset, opts.journal_settings())) if journal_dir else None
    )
    results: dict[int, Estimates] = dict(journal.done) if journal else {}
    resumed, earlier_seconds = len(results), journal.seconds if journal else 0.0
    todo = [n for n in range(len(parts)) if n not in results]
    desc = f"log p(x), K={iw_samples}"
    already = sum(len(parts[n]) for n in results if n < len(parts))
    bar = tqdm(total=len(dataset), initial=already, desc=desc, unit="img", disable=not progress, leave=False)
    if journal is not None and resumed and progress:
        bar.write(f"resuming {journal.path}: {resumed} of {len(parts)} batches already done", sys.stderr)
    t0 = last = time.perf_counter()

    def finished(number: int, values: Estimates) -> None:
        nonlocal last
        now = time.perf_counter()
        results[number] = values
        if journal is not None:
            journal.record(number, values, now - last)
        last = now
        bar.update(len(parts[number]))

    with bar:
        if processes > 1 and todo:
            from vaelab.evaluation.parallel import sharded_estimates

            sharded_estimates(estimate_batch, model, {n: parts[n] for n in todo}, opts, processes, finished)
        else:
            for number in todo:
                finished(number, estimate_batch(model, parts[number], opts, number))
    seconds = earlier_seconds + time.perf_counter() - t0  # the journalled batches' time included
    ks = nested_ks(iw_samples)
    by_k = {
        k: torch.cat([results[n][k] for n in range(len(parts))] or [torch.empty(0, dtype=torch.float64)])
        for k in ks
    }
    flops = _estimate_flops(model, parts[0], opts, len(dataset)) if parts else None
    model.train(was_training)
    return LogLikelihood(
        iw_samples, by_k[iw_samples], by_k, seconds, precision, compile, flops, processes,
        resumed_batches=resumed, journal=journal.path if journal else None,
    )  # fmt: skip


def estimate_batch(model: VAE, part: ImageDataset, opts: EstimateOptions, number: int) -> Estimates:
    """{K': (n,) estimates} for the images ``part``, batch number ``number`` of the evaluation (its
    latents seeded by the evaluation's seed and that number, in a forked RNG)."""
    device = model.device
    x = to_float(part.images.to(device), "none")
    y = part.labels.to(device) if model.num_classes and part.labels is not None else None
    with forked_rng(device):
        torch.manual_seed(derive_seed(opts.seed, "iw-batch", number))
        return iw_log_likelihood_batch(model, x, opts.iw_samples, max_elements=opts.max_elements,
                                       report_ks=tuple(nested_ks(opts.iw_samples)), labels=y,
                                       precision=opts.precision, compile=opts.compile)  # fmt: skip


def _estimate_flops(model: VAE, first: ImageDataset, opts: EstimateOptions, total: int) -> float:
    """The whole estimate's FLOPs, from its first batch's (all full ones cost alike), in a forked RNG."""
    x = to_float(first.images.to(model.device), "none")
    y = first.labels.to(model.device) if model.num_classes and first.labels is not None else None
    chunks = len(chunk_sizes(opts.iw_samples, samples_per_chunk_cap(model, len(x), opts.max_elements)))
    with forked_rng(model.device):
        return iw_flops(model, x, opts.iw_samples, chunks, y) / len(x) * total
