"""What the training loop writes into a run directory besides checkpoints: run facts and image grids."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from vaelab.config import RunConfig, dump_config
from vaelab.io.atomic import atomic_write_text
from vaelab.io.images import interleave_rows, make_grid, save_grid
from vaelab.io.rundir import MetricsLogger
from vaelab.models.vae import VAE
from vaelab.runtime import environment
from vaelab.training.distributed import DistContext


def write_run_files(
    run_dir: Path,
    config: RunConfig,
    train_set: object,
    val_set: object,
    ctx: DistContext,
    resumed_at: tuple[int, int] | None,
) -> None:
    """The resolved config and the facts needed to repeat the run (seed, split, versions, command)."""
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if resumed_at is not None and meta_path.exists() else {}
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta.setdefault("command", sys.argv)
    meta.update(
        seed=config.train.seed,
        split_seed=config.data.split_seed,
        dataset=getattr(train_set, "name", "?"),
        train_images=len(train_set),  # type: ignore[arg-type]
        val_images=len(val_set),  # type: ignore[arg-type]
        world_size=ctx.world_size,
        device=str(ctx.device),
        environment=environment(),
    )
    if resumed_at is not None:
        meta.setdefault("resumes", []).append(
            {"after_epoch": resumed_at[0], "batch": resumed_at[1], "command": sys.argv, "time": time.time()}
        )
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


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
    nrow = None
    if model.num_classes:
        from vaelab.generation.conditional import class_grid_latents

        per_class = min(len(grid_z), 10)
        z, labels = class_grid_latents(grid_z[:per_class], model.num_classes)
        samples, nrow = model.decode(z.to(model.device), labels.to(model.device)).cpu(), per_class
    else:
        samples = model.decode(grid_z.to(model.device)).cpu()
    save_grid(samples, run_dir / "samples" / f"epoch_{epoch:03d}.png", nrow=nrow)
    labels = recon_labels.to(model.device) if recon_labels is not None else None
    recons = model.reconstruct(recon_inputs.to(model.device), labels).cpu()
    pairs, per_row = interleave_rows(recon_inputs, recons, 8)
    save_grid(pairs, run_dir / "reconstructions" / f"epoch_{epoch:03d}.png", nrow=per_row)
    logger.image("samples", make_grid(samples, nrow=nrow), step)
    logger.image("reconstructions", make_grid(pairs, nrow=per_row), step)
    model.train(was_training)
