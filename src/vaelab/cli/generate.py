"""``vaelab sample`` and ``vaelab reconstruct``: images from a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vaelab.cli.common import (
    add_data_options,
    add_device_option,
    data_overrides,
    load_model,
    saved_data_config,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="draw new images from a trained model",
        description="Sample z from the prior, decode, and write the images as an .npz (key 'images', uint8, "
        "N x H x W x C) and optionally a PNG grid.",
    )
    p.add_argument("model", metavar="MODEL", help="a run directory or a saved-model directory")
    p.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    p.add_argument(
        "--temperature",
        type=temperatures,
        default=[1.0],
        metavar="T[,T...]",
        help="prior std scale, >= 0 (<1: safer samples, 0: the mean); one number, or one per stochastic "
        "layer of a hierarchical model, top first, comma-separated (e.g. 1,0.8,0.6)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the latents (default 0)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the images")
    p.add_argument("--grid", metavar="FILE.png", help="also write a PNG grid of the images")
    p.add_argument(
        "--class",
        dest="classes",
        metavar="C|C1,C2|all",
        help="conditional models: the class(es) to draw, balanced over a list or 'all' (default all); "
        "the .npz then also holds 'labels' (int64)",
    )
    p.add_argument(
        "--prior",
        choices=["model", "gmm"],
        default="model",
        help="model: the model's own prior (default); gmm: the mixture 'vaelab fit-prior' saved beside it",
    )
    add_device_option(p)
    p.set_defaults(func=run_sample)

    r = sub.add_parser(
        "reconstruct",
        help="encode and decode dataset images; write inputs beside reconstructions",
        description="Reconstruct images of a dataset split: a PNG grid with rows of inputs over rows of "
        "reconstructions.",
    )
    r.add_argument("model", metavar="MODEL", help="a run directory or a saved-model directory")
    add_data_options(r, "the dataset the model was trained on")
    r.add_argument("--split", choices=["train", "test"], default="test", help="which split (default test)")
    r.add_argument("-n", type=int, default=32, help="number of images (default 32)")
    r.add_argument("--seed", type=int, default=0, help="seed for choosing the images (default 0)")
    r.add_argument("--grid", required=True, metavar="FILE.png", help="where to write the comparison grid")
    add_device_option(r)
    r.set_defaults(func=run_reconstruct)


def temperatures(text: str) -> list[float]:
    """``--temperature`` value: "0.8" or "1,0.8,0.6" -> a list of non-negative numbers."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if any(not (v >= 0 and v != float("inf")) for v in values):
        raise argparse.ArgumentTypeError(f"temperatures must be finite and >= 0, got {text!r}")
    return values


def run_sample(args: argparse.Namespace) -> int:
    from vaelab.generation import sample, save_samples_npz
    from vaelab.io.images import save_grid

    if not args.out.endswith(".npz"):
        raise ValueError(f"--out must name a .npz file, got {args.out}")
    model = load_model(args)
    temp = args.temperature[0] if len(args.temperature) == 1 else args.temperature
    labels = None
    if args.classes is not None or model.num_classes:
        from vaelab.generation.conditional import balanced_labels, parse_classes, require_conditional

        classes = parse_classes(args.classes or "all", require_conditional(model))
        labels = balanced_labels(args.n, classes)
    prior = None
    if args.prior == "gmm":
        from vaelab.generation.gmm_prior import load_gmm_prior

        prior = load_gmm_prior(args.model, model.latent_dim)
    images = sample(model, args.n, temperature=temp, seed=args.seed, labels=labels, prior=prior)
    save_samples_npz(args.out, images, labels)
    print(f"wrote {args.n} samples to {args.out}", file=sys.stderr)
    if args.grid:
        per_class = args.n // len(classes) if labels is not None and args.n % len(classes) == 0 else None
        save_grid(images, args.grid, nrow=per_class)
        print(f"wrote grid {args.grid}", file=sys.stderr)
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    from vaelab.data import load_dataset, to_float
    from vaelab.data.config import DataConfig
    from vaelab.generation import reconstruct
    from vaelab.io.images import interleave_rows, save_grid

    model = load_model(args)
    data_cfg = DataConfig.model_validate({**saved_data_config(args.model), **data_overrides(args)})
    dataset = load_dataset(data_cfg, args.split)
    if dataset.image_shape != model.image_shape:
        raise ValueError(
            f"dataset images are {dataset.image_shape} but the model expects {model.image_shape}"
        )
    n = min(args.n, len(dataset))
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[:n]
    inputs = to_float(dataset.images[idx], "none")
    labels = dataset.labels[idx] if model.num_classes and dataset.labels is not None else None
    recons = reconstruct(model, inputs, labels=labels)
    pairs, per_row = interleave_rows(inputs, recons, 8)
    save_grid(pairs, args.grid, nrow=per_row)
    mse = float(((recons - inputs) ** 2).mean())
    print(
        f"wrote {Path(args.grid)} ({n} inputs over their reconstructions; pixel MSE {mse:.4f})",
        file=sys.stderr,
    )
    return 0
