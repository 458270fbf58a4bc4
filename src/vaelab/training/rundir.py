"""What the training loop writes into a run directory besides checkpoints: run facts, image grids, and
after each epoch the validation numbers, the saved model and the metrics row."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.config import RunConfig, dump_config
from vaelab.data import ImageDataset, PackedDataset
from vaelab.evaluation.elbo import evaluate_elbo
from vaelab.evaluation.report import quick_evaluate
from vaelab.io.atomic import atomic_write_text
from vaelab.io.images import interleave_rows, make_grid, save_grid
from vaelab.io.rundir import MetricsLogger, plot_loss_curve
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed, environment
from vaelab.training.distributed import DistContext
from vaelab.training.health import posterior_health


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


def end_of_epoch(
    model: VAE,
    config: RunConfig,
    run_dir: Path,
    epoch: int,
    step: int,
    val_set: ImageDataset | PackedDataset,
    row: dict[str, Any],
    grid_z: torch.Tensor,
    recon_inputs: tuple[torch.Tensor, torch.Tensor | None],
    logger: MetricsLogger,
    history: list[dict[str, Any]],
    log: bool,
    t0: float,
    last: bool,
) -> None:
    """Rank 0 after each epoch: validation ELBO, optional cheap IW evaluation, grids, saved model, logs.

    ``model`` is the one to evaluate and save: the EMA copy when train.ema_decay is on.
    """
    tc = config.train
    binarize = config.data.binarize
    val_seed = derive_seed(config.data.split_seed, "val-binarize")
    val = evaluate_elbo(model, val_set, batch_size=tc.eval_batch_size, binarize=binarize, seed=val_seed)
    row.update(
        val_elbo=val["elbo"], val_neg_elbo=-val["elbo"], val_log_px_z=val["log_px_z"], val_kl=val["kl"]
    )
    row.update(posterior_health(model, val_set, images=tc.eval_images, binarize=binarize, seed=val_seed))
    if "kl_layers" in val:  # hierarchical models: validation KL of each stochastic layer (1 = top)
        row.update({f"val_kl_layer{i + 1}": kl for i, kl in enumerate(val["kl_layers"])})
    if tc.eval_every and (last or epoch % tc.eval_every == 0):
        row.update(
            quick_evaluate(
                model,
                val_set,
                iw_samples=tc.eval_iw_samples,
                images=tc.eval_images,
                binarize=binarize,
                seed=val_seed,
            )
        )
    if last or epoch % tc.image_every == 0:
        write_grids(model, run_dir, epoch, grid_z, *recon_inputs, logger, step)
    extra = {
        "epoch": epoch,
        "step": step,
        "train_minutes": row["train_minutes"],
        "data": config.data.model_dump(mode="json"),
    }
    model.save_pretrained(run_dir / "model", extra=extra)
    if tc.snapshot_every and (last or epoch % tc.snapshot_every == 0):
        model.save_pretrained(run_dir / "snapshots" / f"epoch-{epoch:04d}", extra=extra)
    row["epoch_seconds"] = time.perf_counter() - t0
    logger.log(row, step)
    history.append(row)
    if last or epoch % max(1, tc.epochs // 20) == 0:
        plot_loss_curve(history, run_dir / "loss_curve.png")
    if log:
        tqdm.write(
            f"epoch {epoch}/{tc.epochs}  train -ELBO {-row['train_elbo']:.2f}  val -ELBO {-val['elbo']:.2f}  "
            f"KL {val['kl']:.2f}  rec {-val['log_px_z']:.2f}  active {row.get('val_active_units', '?')}  "
            f"skipped {row['skipped_updates']}  ({row['train_seconds']:.1f}s, "
            f"{row['images_per_s']:.0f} img/s{_flops_note(row)})",
            file=sys.stderr,
        )


def _flops_note(row: dict[str, Any]) -> str:
    """The epoch line's ", 52 GFLOP/s = 29% of peak" when the step's FLOPs were counted."""
    if "gflop_per_s" not in row:
        return ""
    return f", {row['gflop_per_s']:.0f} GFLOP/s = {row['peak_fraction']:.0%} of peak"
