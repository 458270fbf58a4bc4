"""``vaelab fit-prior``, ``interpolate``, ``traverse`` and ``attribute``: controlling what a model makes.

Each latent tool writes a PNG grid, or an animated GIF when ``--out`` ends in ``.gif``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from vaelab.cli.common import add_model_command, check_at_least, check_suffix, load_model_and_data, writing
from vaelab.errors import DataError, UsageError


def _latent_tool(sub: argparse._SubParsersAction, name: str, run: Any) -> argparse.ArgumentParser:
    """A command that writes a PNG grid or, for --out FILE.gif, an animation."""
    p = add_model_command(sub, name, run)
    p.add_argument("--out", required=True, metavar="FILE.png|FILE.gif", help="grid (PNG) or animation")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    f = add_model_command(sub, "fit-prior", run_fit_prior, split=False)
    f.add_argument(
        "--prior",
        choices=["gmm", "flow", "diffusion", "two_stage"],
        default="gmm",
        help="gmm: Gaussian mixture (default, seconds); flow: RealNVP; diffusion: DDPM/DDIM over z; "
        "two_stage: a second VAE over z (Dai & Wipf 2019); docs/priors.md says which to use when",
    )
    f.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a prior option (repeatable), e.g. steps=3000, hidden=256, layers=8, sample_steps=50, "
        "source=sample, conditional=true (per-class prior; needs labels), components=10",
    )
    f.add_argument("--components", type=int, help="gmm: mixture components (default 10)")
    f.add_argument("--covariance", choices=["full", "diag", "tied", "spherical"], help="gmm: default full")
    f.add_argument("--seed", type=int, default=0, help="seed of the fit (default 0)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = _latent_tool(sub, "interpolate", run_interpolate)
    i.add_argument("--from", dest="index_a", type=int, default=0, metavar="I", help="first image's index")
    i.add_argument("--to", dest="index_b", type=int, default=1, metavar="J", help="second image's index")
    i.add_argument("--steps", type=int, default=10, help="images along the path, ends included")
    i.add_argument("--mode", choices=["linear", "slerp", "both"], default="both", help="default both")

    t = _latent_tool(sub, "traverse", run_traverse)
    t.add_argument("--index", type=int, default=0, help="the image to start from (default 0)")
    t.add_argument("--dims", type=int, default=10, help="how many dimensions (highest KL first)")
    t.add_argument("--steps", type=int, default=9, help="values per dimension (default 9)")
    t.add_argument("--range", dest="span", type=float, default=3.0, help="sweep [-R, R] (default 3)")
    t.add_argument("--kl-images", type=int, default=1000, help="images to rank dimensions by KL")

    a = _latent_tool(sub, "attribute", run_attribute)
    a.add_argument("--from-class", type=int, required=True, metavar="A", help="the source group's label")
    a.add_argument("--to-class", type=int, required=True, metavar="B", help="the target group's label")
    a.add_argument("-n", type=int, default=6, help="images of class A to move (default 6)")
    a.add_argument("--steps", type=int, default=7, help="strengths from 0 to --strength (default 7)")
    a.add_argument("--strength", type=float, default=1.5, help="largest multiple of v (default 1.5)")


def _float(images: torch.Tensor) -> torch.Tensor:
    from vaelab.data import to_float

    return to_float(images, "none")


def _write(frames: list[torch.Tensor], grid: torch.Tensor, nrow: int, out: str) -> None:
    """``frames`` as a GIF (one grid per frame) when ``out`` ends in .gif, else ``grid`` as a PNG."""
    from vaelab.io.images import save_gif, save_grid

    with writing("--out", out):
        if out.endswith(".gif"):
            save_gif(frames, out, nrow=max(1, len(frames[0]) if len(frames[0]) <= 10 else 10))
        else:
            save_grid(grid, out, nrow=nrow)
    print(f"wrote {out}", file=sys.stderr)


def _check_index(index: int, n: int, name: str) -> int:
    if not 0 <= index < n:
        raise UsageError(f"{name} {index} is out of range: the split has {n} images")
    return index


def _check_out(args: argparse.Namespace) -> None:
    check_suffix(args.out, (".png", ".gif"), "--out")


def run_fit_prior(args: argparse.Namespace) -> int:
    """Fit a latent prior to the aggregate posterior after training (sample with --prior KIND).

    Encode the training images, fit a density to their top-latent posterior means (a Gaussian mixture,
    a normalising flow, a diffusion model or a second VAE) and save it beside the model as
    prior_KIND.safetensors; 'vaelab sample MODEL --prior KIND' then samples from it. The fit time is
    printed and kept in the file.
    """
    from vaelab.config import parse_override
    from vaelab.generation.priors import fit_prior, prior_config, save_prior

    options: dict[str, Any] = {}
    for item in args.options:
        path, value = parse_override(item)
        options[".".join(path)] = value
    for name in ("components", "covariance"):
        if getattr(args, name) is not None:
            if args.prior != "gmm":
                raise UsageError(f"--{name} is a gmm option; the {args.prior} prior takes --set KEY=VALUE")
            options[name] = getattr(args, name)
    config = prior_config(args.prior, options)  # a bad option fails before anything is loaded
    model, data = load_model_and_data(args, "train")
    if (model.num_classes or config.conditional) and data.labels is None:
        raise DataError(f"dataset {data.name!r} has no labels: a conditional model or prior needs them")
    prior = fit_prior(
        model,
        _float(data.images),
        args.prior,
        config,
        labels=data.labels,
        num_classes=model.num_classes or data.num_classes,
        seed=args.seed,
        progress=not args.no_progress,
    )
    with writing("MODEL", args.model):
        path = save_prior(prior, args.model)
    info = prior.info
    print(
        f"wrote {path} ({args.prior} prior fitted to {info['codes']} training images' "
        f"{info['fitted_to']} in {info['fit_seconds']:.1f} s, encoding included)",
        file=sys.stderr,
    )
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    """Decode the path between two images' latents (linear or spherical).

    Encode two images of a split (by index), walk between their posterior means and decode: rows for
    linear and/or spherical (slerp) interpolation.
    """
    from vaelab.generation import interpolate

    _check_out(args)
    check_at_least(args.steps, 2, "--steps")
    model, data = load_model_and_data(args, args.split)
    a = _float(data.images[_check_index(args.index_a, len(data), "--from")])
    b = _float(data.images[_check_index(args.index_b, len(data), "--to")])
    modes = ["linear", "slerp"] if args.mode == "both" else [args.mode]
    rows = [interpolate(model, a, b, steps=args.steps, mode=m) for m in modes]
    frames = [torch.stack([row[k] for row in rows]) for k in range(args.steps)]
    frames += frames[-2:0:-1]  # ping-pong, so the loop has no jump
    _write(frames, torch.cat(rows), args.steps, args.out)
    return 0


def run_traverse(args: argparse.Namespace) -> int:
    """Vary each latent dimension in turn, most informative (highest KL) first.

    Start from an image's posterior mean and sweep one latent dimension at a time over [-range, range]:
    one row per dimension, ordered by the dimension's mean KL over the split.
    """
    from vaelab.generation import dims_by_kl, encode_mean, kl_per_dim, traverse

    _check_out(args)
    for value, option in ((args.dims, "--dims"), (args.steps, "--steps"), (args.kl_images, "--kl-images")):
        check_at_least(value, 1, option)
    model, data = load_model_and_data(args, args.split)
    start = _float(data.images[_check_index(args.index, len(data), "--index")])
    kl = kl_per_dim(model, _float(data.images[: args.kl_images]))
    dims = dims_by_kl(kl, min(args.dims, model.latent_dim))
    z = encode_mean(model, start[None])[0]
    values = torch.linspace(-args.span, args.span, args.steps)
    grid = traverse(model, z, dims, values)  # row-major by dimension
    frames = [grid[k :: args.steps] for k in range(args.steps)]
    frames += frames[-2:0:-1]
    print(f"dimensions by KL: {dims}", file=sys.stderr)
    _write(frames, grid, args.steps, args.out)
    return 0


def run_attribute(args: argparse.Namespace) -> int:
    """Latent arithmetic: move images along the mean difference between two labelled groups.

    Attribute vector v = mean z of class TO - mean z of class FROM (over the split); decode z(x) + s v
    for images of class FROM, s from 0 to --strength: one row per image.
    """
    from vaelab.generation import attribute_vector, latent_arithmetic

    _check_out(args)
    check_at_least(args.n, 1, "-n")
    check_at_least(args.steps, 1, "--steps")
    model, data = load_model_and_data(args, args.split)
    if data.labels is None:
        raise DataError(f"dataset {data.name!r} has no labels, so it has no groups to compare")
    images = _float(data.images)
    vector = attribute_vector(model, images, data.labels, args.from_class, args.to_class)
    chosen = images[data.labels == args.from_class][: args.n]
    strengths = torch.linspace(0.0, args.strength, args.steps)
    grid = latent_arithmetic(model, chosen, vector, strengths)
    frames = [grid[k :: args.steps] for k in range(args.steps)]
    frames += frames[-2:0:-1]
    print(
        f"attribute vector {args.from_class} -> {args.to_class}: norm {float(vector.norm()):.3f}",
        file=sys.stderr,
    )
    _write(frames, grid, args.steps, args.out)
    return 0
