"""``vaelab sample`` and ``vaelab reconstruct``: images from a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vaelab.cli.common import (
    add_model_command,
    check_at_least,
    check_suffix,
    load_model,
    load_model_and_data,
    writing,
)
from vaelab.errors import DataError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_model_command(sub, "sample", run_sample, data=False, split=False)
    p.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    p.add_argument(
        "--temperature",
        type=temperatures,
        default=[1.0],
        metavar="T[,T...]",
        help="prior std scale, >= 0 (<1: safer samples, 0: the mean); one number, or one per stochastic "
        "layer of a hierarchical model, top first, comma-separated (e.g. 1,0.8,0.6)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        metavar="W",
        help="classifier-free guidance scale, >= 0, for a conditional model trained with "
        "model.condition.label_dropout > 0: 1 = none (default), > 1 = more typical of the class, "
        "0 = unconditional",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the latents (default 0)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the images")
    p.add_argument("--grid", metavar="FILE.png", help="also write a PNG grid of the images")
    p.add_argument(
        "--class",
        dest="classes",
        metavar="C|C1,C2|all",
        help="conditional models and class-conditional fitted priors: the class(es) to draw, balanced "
        "over a list or 'all' (default all); the .npz then also holds 'labels' (int64)",
    )
    p.add_argument(
        "--prior",
        choices=["model", "gmm", "flow", "diffusion", "two_stage"],
        default="model",
        help="model: the model's own prior (default); gmm, flow, diffusion, two_stage: the prior "
        "'vaelab fit-prior --prior KIND' saved beside it (the top latent's, for a hierarchical model)",
    )
    p.add_argument(
        "--steps", type=int, help="--prior diffusion: DDIM sampling steps (default: the fit's sample_steps)"
    )

    r = add_model_command(sub, "reconstruct", run_reconstruct)
    r.add_argument("-n", type=int, default=32, help="number of images (default 32)")
    r.add_argument("--seed", type=int, default=0, help="seed for choosing the images (default 0)")
    r.add_argument("--grid", required=True, metavar="FILE.png", help="where to write the comparison grid")


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
    """Draw new images from a trained model.

    Sample z from the prior, decode, and write the images as an .npz (key 'images', uint8,
    N x H x W x C) and optionally a PNG grid.
    """
    from vaelab.generation import sample, save_samples_npz
    from vaelab.io.images import save_grid

    check_suffix(args.out, (".npz",), "--out")
    check_at_least(args.n, 1, "-n")
    check_at_least(args.steps, 1, "--steps")
    if args.steps is not None and args.prior != "diffusion":
        raise UsageError("--steps is for --prior diffusion")
    model = load_model(args)
    temp = args.temperature[0] if len(args.temperature) == 1 else args.temperature
    prior = None
    if args.prior != "model":
        from vaelab.generation.priors import load_prior

        prior = load_prior(args.model, args.prior, model.latent_dim)
        if args.steps is not None:
            prior.steps = args.steps
    labels = None
    if args.classes is not None or model.num_classes or (prior is not None and prior.num_classes):
        from vaelab.generation.conditional import balanced_labels, parse_classes, require_conditional

        k = prior.num_classes if prior is not None and prior.num_classes else require_conditional(model)
        classes = parse_classes(args.classes or "all", k)
        labels = balanced_labels(args.n, classes)
    images = sample(
        model, args.n, temperature=temp, seed=args.seed, labels=labels, prior=prior, guidance=args.guidance
    )
    with writing("--out", args.out):
        save_samples_npz(args.out, images, labels)
    print(f"wrote {args.n} samples to {args.out}", file=sys.stderr)
    if args.grid:
        per_class = args.n // len(classes) if labels is not None and args.n % len(classes) == 0 else None
        with writing("--grid", args.grid):
            save_grid(images, args.grid, nrow=per_class)
        print(f"wrote grid {args.grid}", file=sys.stderr)
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """Encode and decode dataset images; write inputs beside reconstructions.

    Reconstruct images of a dataset split: a PNG grid with rows of inputs over rows of
    reconstructions.
    """
    from vaelab.data import to_float
    from vaelab.generation import reconstruct
    from vaelab.io.images import interleave_rows, save_grid

    check_at_least(args.n, 1, "-n")
    model, dataset = load_model_and_data(args, args.split, progress=True)
    if model.num_classes and dataset.labels is None:
        raise DataError(f"the model is conditional on class labels, but dataset {dataset.name!r} has none")
    n = min(args.n, len(dataset))
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[:n]
    inputs = to_float(dataset.images[idx], "none")
    labels = dataset.labels[idx] if model.num_classes else None
    recons = reconstruct(model, inputs, labels=labels)
    pairs, per_row = interleave_rows(inputs, recons, 8)
    with writing("--grid", args.grid):
        save_grid(pairs, args.grid, nrow=per_row)
    mse = float(((recons - inputs) ** 2).mean())
    print(
        f"wrote {Path(args.grid)} ({n} inputs over their reconstructions; pixel MSE {mse:.4f})",
        file=sys.stderr,
    )
    return 0
