"""The training loop: one loop, Adam on the objective, a validation ELBO, grids and a checkpoint per epoch.

Reproducibility: everything random inside epoch ``e`` (shuffling, binarisation, the
reparameterisation noise) is seeded from (seed, e), so a run resumed from the checkpoint of epoch
``e`` continues exactly as if it had never stopped (on the CPU, same machine and versions).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.config import RunConfig, dump_config
from vaelab.data import ImageDataset, batches, load_dataset, to_float
from vaelab.evaluation.elbo import evaluate_elbo
from vaelab.io.atomic import atomic_write_text
from vaelab.io.images import interleave_rows, make_grid, save_grid
from vaelab.io.rundir import MetricsLogger, plot_loss_curve, read_metrics, write_metrics
from vaelab.models.vae import VAE
from vaelab.objectives import build_objective
from vaelab.runtime import derive_seed, environment, resolve_device, seed_everything
from vaelab.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    """What ``train`` returns: where the run lives, the trained model and the per-epoch metrics."""

    run_dir: Path
    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_data(config: RunConfig, progress: bool = True) -> tuple[ImageDataset, ImageDataset]:
    """Training split divided into (train, validation) with the configured, recorded seed."""
    full = load_dataset(config.data, "train", progress=progress)
    return full.split(config.data.val_fraction, config.data.split_seed)


def resolve_model_config(config: RunConfig, image_shape: tuple[int, int, int]) -> RunConfig:
    """Fill ``model.image_shape`` from the data, or check that a configured one matches it."""
    configured = config.model.image_shape
    if configured is not None and tuple(configured) != tuple(image_shape):
        raise ValueError(
            f"model.image_shape {tuple(configured)} does not match the dataset's images {tuple(image_shape)}"
        )
    model = config.model.model_copy(update={"image_shape": tuple(image_shape)})
    return config.model_copy(update={"model": model})


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    data: tuple[ImageDataset, ImageDataset] | None = None,
) -> TrainResult:
    """Train a VAE as ``config`` says, writing everything to ``run_dir``; ``resume`` continues a run there."""
    run_dir = Path(run_dir)
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    train_set, val_set = data if data is not None else prepare_data(config, progress)
    config = resolve_model_config(config, train_set.image_shape)

    model = VAE(config.model).to(device)
    objective = build_objective(config.objective)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    start_epoch, step = 0, 0
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT_NAME)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        # Metrics logged after the checkpoint (a crash between the two) are dropped, then rewritten.
        write_metrics(run_dir, [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= start_epoch])
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / CHECKPOINT_NAME).exists():
            raise FileExistsError(
                f"{run_dir} already holds a run: use --resume {run_dir} or another --run-dir"
            )
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    _write_run_files(run_dir, config, train_set, val_set, resumed_at=start_epoch if resume else None)

    logger = MetricsLogger(run_dir)
    history = read_metrics(run_dir)
    grid_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "grid"))
    grid_z = model.prior.sample(tc.grid_samples, generator=grid_gen)
    recon_source = val_set if len(val_set) else train_set
    recon_inputs = to_float(recon_source.images[: tc.grid_reconstructions], "none")
    binarize = config.data.binarize
    n_batches = -(-len(train_set) // tc.batch_size)
    try:
        for epoch in range(start_epoch + 1, tc.epochs + 1):
            torch.manual_seed(derive_seed(tc.seed, "epoch", epoch))
            shuffle_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "shuffle", epoch))
            binarize_gen = torch.Generator().manual_seed(derive_seed(tc.seed, "binarize", epoch))
            model.train()
            sums = torch.zeros(4, dtype=torch.float64)
            seen = 0
            t0 = time.perf_counter()
            bar = tqdm(
                batches(train_set, tc.batch_size, shuffle=True, generator=shuffle_gen),
                total=n_batches,
                desc=f"epoch {epoch}/{tc.epochs}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            )
            for i, (images, _labels) in enumerate(bar):
                x = to_float(images, binarize, generator=binarize_gen).to(device, non_blocking=True)
                terms = objective(model(x))
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                optimizer.step()
                step += 1
                b = x.shape[0]
                seen += b
                sums += (
                    torch.stack(
                        [
                            terms.loss.detach() * b,
                            terms.elbo.detach().sum(),
                            terms.log_px_z.detach().sum(),
                            terms.kl.detach().sum(),
                        ]
                    )
                    .double()
                    .cpu()
                )
                if progress and (i % 20 == 0 or i == n_batches - 1):
                    loss, _, rec, kl = (sums / seen).tolist()
                    bar.set_postfix(loss=f"{loss:.2f}", rec=f"{-rec:.2f}", kl=f"{kl:.2f}", refresh=False)
            train_seconds = time.perf_counter() - t0
            loss, elbo, rec, kl = (sums / max(seen, 1)).tolist()
            val = evaluate_elbo(
                model,
                val_set,
                batch_size=tc.eval_batch_size,
                binarize=binarize,
                seed=derive_seed(config.data.split_seed, "val-binarize"),
            )
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "train_loss": loss,
                "train_elbo": elbo,
                "train_log_px_z": rec,
                "train_kl": kl,
                "val_elbo": val["elbo"],
                "val_neg_elbo": -val["elbo"],
                "val_log_px_z": val["log_px_z"],
                "val_kl": val["kl"],
                "train_seconds": train_seconds,
                "images_per_s": seen / train_seconds if train_seconds > 0 else None,
            }
            last = epoch == tc.epochs
            if last or epoch % tc.image_every == 0:
                _write_grids(model, run_dir, epoch, grid_z, recon_inputs, logger, step)
            save_checkpoint(
                run_dir / CHECKPOINT_NAME,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                },
            )
            model.save_pretrained(
                run_dir / "model",
                extra={"epoch": epoch, "step": step, "data": config.data.model_dump(mode="json")},
            )
            row["epoch_seconds"] = time.perf_counter() - t0
            logger.log(row, step)
            history.append(row)
            if last or epoch % max(1, tc.epochs // 20) == 0:
                plot_loss_curve(history, run_dir / "loss_curve.png")
            if progress:
                tqdm.write(
                    f"epoch {epoch}/{tc.epochs}  train -ELBO {-elbo:.2f}  val -ELBO {-val['elbo']:.2f}  "
                    f"KL {val['kl']:.2f}  rec {-val['log_px_z']:.2f}  ({train_seconds:.1f}s, "
                    f"{row['images_per_s']:.0f} img/s)",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last finished epoch is saved; continue with --resume {run_dir}",
            file=sys.stderr,
        )
        raise
    finally:
        logger.close()
    model.eval()
    return TrainResult(run_dir=run_dir, model=model, history=history)


def _write_run_files(
    run_dir: Path, config: RunConfig, train_set: ImageDataset, val_set: ImageDataset, resumed_at: int | None
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
        dataset=train_set.name,
        train_images=len(train_set),
        val_images=len(val_set),
        environment=environment(),
    )
    if resumed_at is not None:
        meta.setdefault("resumes", []).append(
            {"at_epoch": resumed_at, "command": sys.argv, "time": time.time()}
        )
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


@torch.no_grad()
def _write_grids(
    model: VAE,
    run_dir: Path,
    epoch: int,
    grid_z: torch.Tensor,
    recon_inputs: torch.Tensor,
    logger: MetricsLogger,
    step: int,
) -> None:
    """A sample grid (the same latents every epoch, to watch progress) and inputs beside reconstructions."""
    model.eval()
    samples = model.decode(grid_z.to(model.device)).cpu()
    save_grid(samples, run_dir / "samples" / f"epoch_{epoch:03d}.png")
    recons = model.reconstruct(recon_inputs.to(model.device)).cpu()
    pairs, per_row = interleave_rows(recon_inputs, recons, 8)
    save_grid(pairs, run_dir / "reconstructions" / f"epoch_{epoch:03d}.png", nrow=per_row)
    logger.image("samples", make_grid(samples), step)
    logger.image("reconstructions", make_grid(pairs, nrow=per_row), step)
    model.train()
