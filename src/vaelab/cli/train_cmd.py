"""``vaelab train``: train a VAE from a config file, flags and ``--set`` overrides, or resume a run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vaelab.cli.common import add_command, add_data_options, add_device_option, data_overrides
from vaelab.config import read_yaml, resolve_config
from vaelab.errors import CheckpointError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", run)
    p.add_argument(
        "--config", metavar="FILE", help="YAML config (e.g. configs/seed.yaml); default: built-in defaults"
    )
    add_data_options(p, "digits")
    p.add_argument(
        "--epochs", type=int, metavar="N", help="total number of epochs (with --resume: train up to N)"
    )
    p.add_argument("--batch-size", type=int, metavar="B", help="images per optimisation step")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--seed", type=int, help="seed for initialisation, shuffling and sampling noise")
    add_device_option(p, default=None, help="where to train (auto: a GPU if there is one)")
    p.add_argument(
        "--run-dir", metavar="DIR", help="where to write the run (default: runs/DATASET-TIMESTAMP)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set model.latent_dim=16 --set train.lr=3e-4 (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    """Train a VAE.

    Settings come from --config (YAML, see configs/), then the flags below, then --set overrides. The
    run directory receives the resolved config, metrics (JSONL and TensorBoard), sample and
    reconstruction grids per epoch, a loss curve, a checkpoint and the saved model (RUN_DIR/model).
    """
    from vaelab.models.saving import BEST_MODEL_DIR, MODEL_DIR
    from vaelab.training.epoch_report import kept_best
    from vaelab.training.signals import TrainingInterrupted
    from vaelab.training.trainer import train

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"--resume {run_dir} is not a vaelab run directory (no config.yaml)")
        data = read_yaml(run_dir / "config.yaml")
    else:
        data = read_yaml(args.config) if args.config else {}
    flags = {
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.seed": args.seed,
        "train.device": args.device,
    }
    sets = [f"{k}={v}" for k, v in flags.items() if v is not None]
    sets += [f"data.{k}={v}" for k, v in data_overrides(args).items()]
    config = resolve_config(data, sets + list(args.overrides), args.resume or args.config or "defaults")
    if args.resume:
        run_dir = Path(args.resume)
    elif args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        run_dir = Path("runs") / f"{config.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = train(config, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except TrainingInterrupted as stop:
        print(f"vaelab train: {stop}", file=sys.stderr)
        return 128 + stop.signum
    if not result.history:  # a torchrun rank other than 0
        return 0
    last = result.history[-1]
    print(
        f"done: {run_dir}  (validation -ELBO {last.get('val_neg_elbo', float('nan')):.2f} nats; "
        f"model in {run_dir / MODEL_DIR}, samples in {run_dir / 'samples'})",
        file=sys.stderr,
    )
    best = kept_best(run_dir) if config.train.keep_best else None
    if best is not None and best[0] != last["epoch"]:
        print(
            f"  the best validation epoch was {best[0]} ({best[1]:.2f} nats): "
            f"its model is in {run_dir / BEST_MODEL_DIR}",
            file=sys.stderr,
        )
    return 0
