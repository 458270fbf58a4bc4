"""Before a run's first step: its data, its config resolved against that data, the optimiser, the
checkpoint to resume from, and the run directory's facts (config.yaml, meta.json, metrics.jsonl)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vaelab.data import ImageDataset, PackedDataset, batches, load_dataset, to_float
from vaelab.errors import DataError, OutputExistsError, UsageError
from vaelab.io.atomic import atomic_write_text
from vaelab.io.metrics import STEPS_NAME, read_metrics, write_metrics
from vaelab.models.vae import VAE
from vaelab.runtime import environment
from vaelab.training import distributed as D
from vaelab.training.checkpoint import CHECKPOINT_NAME, Checkpoint
from vaelab.training.run_config import RunConfig, dump_config
from vaelab.training.step import resolve_precision

Dataset = ImageDataset | PackedDataset


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
        raise DataError(
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
    classes = getattr(dataset, "num_classes", None)
    if getattr(dataset, "labels", None) is None or not classes:
        raise DataError(
            f"model.condition needs class labels, but dataset {getattr(dataset, 'name', '?')!r} has none "
            "(use a labelled dataset, e.g. mnist, digits, a folder with class sub-folders or a .npz with "
            "'labels')"
        )
    if condition.num_classes is not None and condition.num_classes < classes:
        raise DataError(
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


def first_images(
    dataset: Dataset, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A fixed random choice of ``n`` images in [0, 1] (datasets may be sorted by class), and labels."""
    images, labels = next(iter(batches(dataset, n, shuffle=True, generator=generator)))
    return to_float(images, "none"), labels


def open_checkpoint(run_dir: Path, resume: bool, ctx: D.DistContext) -> Checkpoint | None:
    """The checkpoint to ``resume`` from, read on rank 0 and sent to the others; for a new run None,
    after making sure ``run_dir`` holds no run. Collective: every rank gets it, or every rank raises."""
    saved, problem = None, None
    path = run_dir / CHECKPOINT_NAME
    if ctx.is_main:
        try:
            if resume:
                saved = Checkpoint.load(path)
                if saved.world_size != ctx.world_size:
                    raise UsageError(
                        f"{run_dir} was trained with {saved.world_size} processes; resume it with the "
                        f"same number (this launch has {ctx.world_size})"
                    )
            elif path.exists():
                raise OutputExistsError(
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
        box = [saved]
        torch.distributed.broadcast_object_list(box, src=0)  # our own processes: no untrusted data
        saved = box[0]
    return saved


def start_run_dir(
    run_dir: Path,
    config: RunConfig,
    train_set: Dataset,
    val_set: Dataset,
    ctx: D.DistContext,
    saved: Checkpoint | None,
) -> None:
    """Rank 0: metrics.jsonl without the rows past the checkpoint (a crash between the two) or empty
    for a new run, the resolved config, and meta.json with the facts needed to repeat the run (seed,
    split, versions, command; each resume appended)."""
    if saved is not None:
        write_metrics(run_dir, [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= saved.epoch])
        if (run_dir / STEPS_NAME).exists():
            steps = [r for r in read_metrics(run_dir, STEPS_NAME) if r["step"] <= saved.step]
            write_metrics(run_dir, steps, STEPS_NAME)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        (run_dir / STEPS_NAME).unlink(missing_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if saved is not None and meta_path.exists() else {}
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta.setdefault("command", sys.argv)
    meta.update(
        seed=config.train.seed,
        split_seed=config.data.split_seed,
        dataset=getattr(train_set, "name", "?"),
        train_images=len(train_set),
        val_images=len(val_set),
        world_size=ctx.world_size,
        device=str(ctx.device),
        precision=resolve_precision(config.train.precision, ctx.device),  # what auto became here
        environment=environment(),
    )
    if saved is not None:
        resumed = {"after_epoch": saved.epoch, "batch": saved.batch, "command": sys.argv, "time": time.time()}
        meta.setdefault("resumes", []).append(resumed)
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
