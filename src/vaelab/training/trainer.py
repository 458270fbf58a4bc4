"""The training loop: one loop for one process and for torchrun, Adam on the objective, a validation
ELBO, grids and checkpoints.

Reproducibility: everything random in epoch ``e`` is seeded from (seed, e) -- the batch order, the
binarisation and each rank's reparameterisation noise -- and a checkpoint stores the generators'
states and the position inside the epoch, so a resumed run continues the same sequence of batches
and ends with the same weights as a run that never stopped (on the CPU, same machine and versions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vaelab.config import RunConfig
from vaelab.data import ImageDataset, PackedDataset, batches, load_dataset, to_float
from vaelab.io.rundir import MetricsLogger, read_metrics, write_metrics
from vaelab.models.vae import VAE
from vaelab.objectives import LossTerms, build_objective
from vaelab.perf import flush_denormals, matmul_peak
from vaelab.runtime import derive_seed, peak_rss_mb, seed_everything
from vaelab.training import distributed as D
from vaelab.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from vaelab.training.ema import build_ema, eval_model
from vaelab.training.rundir import end_of_epoch, write_run_files
from vaelab.training.schedules import build_lr_scheduler, kl_weight
from vaelab.training.signals import TrainingInterrupted, graceful_stop
from vaelab.training.stability import UpdateGuard, check_finite
from vaelab.training.step import build_step, step_flops

Dataset = ImageDataset | PackedDataset
# Epochs at least this long measure the matmul peak again (~0.3 s) for the log's fraction of peak.
PEAK_REFRESH_SECONDS = 10.0


@dataclass
class TrainResult:
    """What ``train`` returns: where the run lives, the trained model (the EMA weights when
    ``train.ema_decay`` is on, as saved in ``model/``) and the per-epoch metrics."""

    run_dir: Path
    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_data(config: RunConfig, progress: bool = True) -> tuple[Dataset, Dataset]:
    """Training split divided into (train, validation) with the configured, recorded seed."""
    full = load_dataset(config.data, "train", progress=progress)
    return full.split(config.data.val_fraction, config.data.split_seed)


def resolve_model_config(
    config: RunConfig, image_shape: tuple[int, int, int], dataset: Dataset | None = None
) -> RunConfig:
    """Fill ``model.image_shape`` from the data, or check that a configured one matches it; for a
    conditional model, fill ``model.condition.num_classes`` from ``dataset`` (which needs labels)."""
    configured = config.model.image_shape
    if configured is not None and tuple(configured) != tuple(image_shape):
        raise ValueError(
            f"model.image_shape {tuple(configured)} does not match the dataset's images {tuple(image_shape)}"
        )
    update: dict[str, Any] = {"image_shape": tuple(image_shape)}
    if config.model.condition is not None and dataset is not None:
        update["condition"] = resolve_condition(config.model.condition, dataset)
    model = config.model.model_copy(update=update)
    return config.model_copy(update={"model": model})


def resolve_condition(condition: Any, dataset: Dataset) -> Any:
    """A conditional model's config with ``num_classes`` from ``dataset``; clear errors when the dataset
    has no labels or more classes than configured."""
    from vaelab.data import DataError

    classes = getattr(dataset, "num_classes", None)
    if getattr(dataset, "labels", None) is None or not classes:
        raise DataError(
            f"model.condition needs class labels, but dataset {getattr(dataset, 'name', '?')!r} has none "
            "(use a labelled dataset, e.g. mnist, digits, a folder with class sub-folders or a .npz with "
            "'labels')"
        )
    if condition.num_classes is not None and condition.num_classes < classes:
        raise ValueError(
            f"model.condition.num_classes={condition.num_classes} but dataset "
            f"{getattr(dataset, 'name', '?')!r} has {classes} classes"
        )
    return condition.model_copy(update={"num_classes": condition.num_classes or classes})


def build_optimizer(model: VAE, config: RunConfig) -> torch.optim.Optimizer:
    """Adam as the config says, fused into one kernel where this torch and device support it."""
    tc = config.train
    kwargs = dict(lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    if tc.fused_optimizer:
        try:
            return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
        except (RuntimeError, ValueError):  # e.g. an MPS or older build without the fused kernel
            pass
    return torch.optim.Adam(model.parameters(), **kwargs)


def _first_images(
    dataset: Dataset, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A fixed random choice of ``n`` images in [0, 1] (datasets may be sorted by class), and labels."""
    images, labels = next(iter(batches(dataset, n, shuffle=True, generator=generator)))
    return to_float(images, "none"), labels


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
    tc = config.train
    flush = flush_denormals(True) if tc.flush_denormals else contextlib.nullcontext()
    with flush:  # on every intra-op thread; the previous mode comes back afterwards
        return _train(config, run_dir, resume, progress, log, data, on_epoch_end)


def _train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool,
    progress: bool,
    log: bool,
    data: tuple[Dataset, Dataset] | None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    """The body of :func:`train`."""
    run_dir = Path(run_dir)
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    ctx = D.init_distributed(tc.device)
    train_set, val_set = data if data is not None else prepare_data(config, progress and ctx.is_main)
    config = resolve_model_config(config, train_set.image_shape, train_set)
    conditional = config.model.condition is not None

    state: dict[str, Any] | None = None
    problem = None
    if ctx.is_main:
        try:
            if resume:
                state = load_checkpoint(run_dir / CHECKPOINT_NAME)
                if int(state.get("world_size", 1)) != ctx.world_size:
                    raise ValueError(
                        f"{run_dir} was trained with {state.get('world_size', 1)} processes; resume it with "
                        f"the same number (this launch has {ctx.world_size})"
                    )
            elif (run_dir / CHECKPOINT_NAME).exists():
                raise FileExistsError(
                    f"{run_dir} already holds a run: use --resume {run_dir} or another --run-dir"
                )
        except Exception as exc:  # every rank must stop, not only the one that saw the problem
            problem = exc
    problems = D.gather_objects(repr(problem) if problem else None, ctx)
    if problem is not None:
        raise problem
    if any(problems):
        raise RuntimeError(f"rank 0 could not start the run: {problems[0]}")
    if ctx.distributed and resume:
        box = [state]
        torch.distributed.broadcast_object_list(box, src=0)  # our own processes: no untrusted data
        state = box[0]

    model = VAE(config.model).to(ctx.device)
    optimizer = build_optimizer(model, config)
    n_batches = -(-len(train_set) // tc.batch_size)
    # Built before the optimiser's state is loaded: LambdaLR records the base lr when it is created.
    scheduler = build_lr_scheduler(optimizer, tc, tc.max_steps or tc.epochs * n_batches)
    guard = UpdateGuard(tc, model.parameters())
    start_epoch, skip, step, seconds_done = 1, 0, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, skip, step = int(state["epoch"]) + 1, int(state["batch"]), int(state["step"])
        seconds_done = float(state.get("train_seconds", 0.0))
    ema = build_ema(model, tc.ema_decay)  # after loading: an EMA switched on at a resume starts here
    if ema is not None and state is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(model) if ctx.distributed else model
    objective = build_objective(config.objective, dataset_size=len(train_set))
    run_step = build_step(
        net,
        objective,
        optimizer,
        tc,
        ctx.device,
        guard=guard,  # clip, or skip a NaN/exploding update on every rank
        ctx=ctx,
        on_update=(lambda: ema.update_parameters(model)) if ema is not None else None,
    )
    flops = None
    if tc.log_flops:
        try:
            flops = step_flops(model, objective, tc, ctx.device)
        except Exception as exc:  # a FLOP count must never stop a run: log without it
            warnings.warn(f"FLOPs not counted ({exc}); the log shows images/s only", stacklevel=2)

    logger = None
    if ctx.is_main:
        if resume:  # rows logged after the checkpoint (a crash between the two) are dropped
            done = start_epoch - 1
            write_metrics(run_dir, [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= done])
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        write_run_files(
            run_dir, config, train_set, val_set, ctx, resumed_at=(start_epoch - 1, skip) if resume else None
        )
        logger = MetricsLogger(run_dir)
    history = read_metrics(run_dir) if ctx.is_main else []
    grid_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "grid"))
    grid_z = model.prior.sample(tc.grid_samples, generator=grid_gen)
    recon_images, recon_labels = _first_images(
        val_set if len(val_set) else train_set, tc.grid_reconstructions, grid_gen
    )
    recon_inputs = (recon_images, recon_labels if conditional else None)
    binarize = config.data.binarize

    def checkpoint(
        epochs_done: int, batch: int, sums: torch.Tensor, binarize_gen: torch.Generator, seconds: float
    ) -> None:
        """Collective (every rank calls it): gathers RNG states and partial sums, rank 0 writes."""
        check_finite({"model": model, "EMA model": ema}, "a checkpoint")  # all ranks: all stop together
        local = {"rng": torch.get_rng_state(), "sums": sums.clone()}
        if ctx.device.type == "cuda":
            local["cuda_rng"] = torch.cuda.get_rng_state(ctx.device)
        ranks = D.gather_objects(local, ctx)
        if ctx.is_main:
            save_checkpoint(
                run_dir / CHECKPOINT_NAME,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epochs_done,
                    "batch": batch,
                    "step": step,
                    "world_size": ctx.world_size,
                    "ranks": ranks,
                    "binarize_rng": binarize_gen.get_state(),
                    "scheduler": scheduler.state_dict(),
                    "guard": guard.state(),
                    "train_seconds": seconds,
                    **({"ema": ema.state_dict()} if ema is not None else {}),
                },
            )

    finished = False
    try:
        with graceful_stop() as stop:
            out_of_time = False
            for epoch in range(start_epoch, tc.epochs + 1):
                if tc.max_steps and step >= tc.max_steps:
                    break
                if tc.max_minutes and D.any_rank(seconds_done >= tc.max_minutes * 60, ctx):
                    break
                shuffle_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "shuffle", epoch))
                binarize_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "binarize", epoch))
                torch.manual_seed(derive_seed(tc.seed, "epoch", epoch, ctx.rank))
                sums = torch.zeros(5, dtype=torch.float64)  # loss, elbo, log_px_z, kl (sums), images
                if epoch == start_epoch and skip and state is not None:  # resume inside this epoch
                    mine = state["ranks"][ctx.rank]
                    torch.set_rng_state(mine["rng"])
                    if "cuda_rng" in mine and ctx.device.type == "cuda":
                        torch.cuda.set_rng_state(mine["cuda_rng"], ctx.device)
                    binarize_gen.set_state(state["binarize_rng"])
                    sums = mine["sums"].clone()
                    if "guard" in state:
                        guard.load_state(state["guard"])
                model.train()
                t0 = time.perf_counter()
                bar = tqdm(
                    total=n_batches,
                    initial=skip if epoch == start_epoch else 0,
                    desc=f"epoch {epoch}/{tc.epochs}",
                    disable=not (progress and ctx.is_main),
                    leave=False,
                    dynamic_ncols=True,
                )
                stream = batches(train_set, tc.batch_size, shuffle=True, generator=shuffle_gen)
                for k, (images, labels) in enumerate(stream):
                    if epoch == start_epoch and k < skip:
                        continue  # replay the epoch's order up to where the checkpoint was taken
                    # Binarise the whole global batch with the shared generator, then take this
                    # rank's slice: the data each rank sees equals a single process's batch.
                    x_all = to_float(images, binarize, generator=binarize_gen)
                    lo, hi = D.shard_bounds(len(x_all), ctx.rank, ctx.world_size)
                    if len(x_all) < ctx.world_size:
                        continue  # a final global batch smaller than the number of ranks
                    x = x_all[lo:hi].to(ctx.device, non_blocking=True)
                    y = labels[lo:hi].to(ctx.device, non_blocking=True) if conditional else None
                    # DDP averages gradients over ranks; weighting each rank's mean by its share of
                    # the global batch makes that average the gradient of the global batch's mean.
                    share = (hi - lo) * ctx.world_size / len(x_all)
                    terms, applied = run_step(x, y, kl_weight(step, tc), share)
                    scheduler.step()  # schedules follow the batch count, skipped updates included
                    step += 1
                    b = hi - lo
                    if applied:  # a skipped step's (maybe NaN) terms stay out of the epoch's means
                        sums += _batch_sums(terms, b)
                    bar.update(1)
                    if progress and ctx.is_main and (k % 20 == 0 or k == n_batches - 1):
                        loss_v, _, rec, kl, seen = sums.tolist()
                        bar.set_postfix(
                            loss=f"{loss_v / seen:.2f}",
                            rec=f"{-rec / seen:.2f}",
                            kl=f"{kl / seen:.2f}",
                            refresh=False,
                        )
                    if tc.max_steps and step >= tc.max_steps:
                        break
                    elapsed = seconds_done + time.perf_counter() - t0
                    if tc.max_minutes and D.any_rank(elapsed >= tc.max_minutes * 60, ctx):
                        out_of_time = True
                        break
                    every = tc.checkpoint_every and step % tc.checkpoint_every == 0
                    if D.any_rank(bool(stop), ctx):
                        checkpoint(epoch - 1, k + 1, sums, binarize_gen, elapsed)
                        raise TrainingInterrupted(stop.signum or 15, step, str(run_dir))
                    if every and k + 1 < n_batches:
                        checkpoint(epoch - 1, k + 1, sums, binarize_gen, elapsed)
                bar.close()
                train_seconds = time.perf_counter() - t0
                seconds_done += train_seconds
                loss_v, elbo, rec, kl, seen = (D.all_reduce_sum(sums.clone(), ctx)).tolist()
                seen = max(seen, 1.0)
                check_finite({"model": model, "EMA model": ema}, "the saved model")  # on every rank
                last = epoch == tc.epochs or bool(tc.max_steps and step >= tc.max_steps) or out_of_time
                if ctx.is_main:
                    assert logger is not None
                    row: dict[str, Any] = {
                        "epoch": epoch,
                        "step": step,
                        "train_loss": loss_v / seen,
                        "train_elbo": elbo / seen,
                        "train_log_px_z": rec / seen,
                        "train_kl": kl / seen,
                        "train_seconds": train_seconds,
                        "train_minutes": seconds_done / 60,  # cumulative over the run and its resumes
                        "images_per_s": seen / train_seconds if train_seconds > 0 else None,
                        "lr": scheduler.get_last_lr()[0],  # for the next update
                        "kl_weight": kl_weight(step, tc),
                        **guard.summary(),
                    }
                    row["peak_rss_mb"] = peak_rss_mb()  # the process's high-water mark so far
                    if flops is not None and row["images_per_s"]:
                        if train_seconds >= PEAK_REFRESH_SECONDS:
                            # The peak again, keeping the best seen: one timed at a slow moment
                            # of a shared machine would overstate every later fraction.
                            fresh = matmul_peak(tc.precision, ctx.device, fresh=True)
                            flops = dataclasses.replace(flops, peak=max(flops.peak, fresh))
                        row.update(flops.rates(row["images_per_s"], ctx.world_size))
                    end_of_epoch(
                        eval_model(model, ema),
                        config,
                        run_dir,
                        epoch,
                        step,
                        val_set,
                        row,
                        grid_z,
                        recon_inputs,
                        logger,
                        history,
                        log,
                        t0,
                        last,
                    )
                    if on_epoch_end is not None:
                        on_epoch_end(row)
                # After the epoch's files: a crash in between re-runs from the previous checkpoint.
                guard.reset()
                checkpoint(epoch, 0, torch.zeros(5, dtype=torch.float64), binarize_gen, seconds_done)
                skip = 0
                if out_of_time:
                    break
        finished = True
    finally:
        if logger is not None:
            logger.close()
        # DDP's reducer keeps the process group alive; freeing it before the group is destroyed
        # (and after every rank got here) keeps gloo's threads from dying at interpreter exit.
        net = None
        D.shutdown(ctx, wait=finished)
    final = eval_model(model, ema)  # the weights that were saved: the EMA's when it is on
    final.eval()
    return TrainResult(run_dir=run_dir, model=final, history=history)


def _batch_sums(terms: LossTerms, b: int) -> torch.Tensor:
    """This batch's contribution to the epoch's sums: loss * b, ELBO, log p(x|z), KL, images."""
    parts = [terms.loss.detach() * b, terms.elbo.detach().sum(), terms.log_px_z.detach().sum()]
    parts += [terms.kl.detach().sum(), torch.tensor(float(b))]
    return torch.stack(parts).double().cpu()
