"""``vaelab evaluate`` and ``vaelab compare``: the numbers that compare VAEs, and tables of them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vaelab.cli.common import (
    add_command,
    add_model_command,
    check_minimums,
    load_model_and_data,
    model_data_config,
    writing,
)
from vaelab.errors import DataError, MissingFileError, UsageError

FEATURE_TRAIN_LIMIT = 60_000


def register(sub: argparse._SubParsersAction) -> None:
    p = add_model_command(sub, "evaluate", run_evaluate)
    p.add_argument(
        "--binarize",
        choices=["none", "dynamic", "static"],
        help="how to present pixels (default: as in training; dynamic = binarised once with --seed)",
    )
    p.add_argument(
        "--iw-samples",
        type=int,
        default=5000,
        metavar="K",
        help="importance samples per image (default 5000, the literature's headline; 5 x 10^7 decoder "
        "passes on MNIST's test set: use --subset for heavy decoders)",
    )
    p.add_argument(
        "--subset", type=int, metavar="N", help="evaluate a seeded random subset of N images (default: all)"
    )
    p.add_argument(
        "--n-samples",
        type=int,
        default=10_000,
        metavar="N",
        help="prior samples for FD / precision / recall and the samples' sharpness",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="the samples' prior std scale, >= 0 (default 1); N(0, I) samples at T = 1 stay beside them",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        metavar="W",
        help="classifier-free guidance of the samples (conditional models trained with label dropout; "
        "default 1: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of binarisation, subset, IW draws, samples")
    p.add_argument("--batch-size", type=int, default=100, metavar="B", help="images per IW batch")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the IW estimator's matmuls in bf16 (autocast; densities stay fp32): faster on CPUs with "
        "AVX512-BF16 or AMX and on GPUs (default fp32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="the IW estimator through torch.compile: 10-30 s to compile, then faster (for large K)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="P",
        help="share the IW estimate's batches out over P CPU worker processes, each with its share of the "
        "threads (small convolutions run faster side by side than split; the same numbers)",
    )
    p.add_argument(
        "--no-sample-quality",
        action="store_true",
        help="draw no samples: skip FD / precision / recall and the samples' sharpness",
    )
    p.add_argument(
        "--inception-weights",
        metavar="FILE",
        help="local weights-inception-2015-12-05-6726825d.pth: adds Inception-v3 FID (needs torch-fidelity)",
    )
    p.add_argument("--out", metavar="DIR", help="where to write report.json, report.md and spectrum.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--ood",
        action="append",
        metavar="OTHER",
        help="out-of-distribution images to tell from the split (an ood: set, folder, .npz, IDX file or "
        "dataset name; repeatable; 'default' = every ood: set but the model's own kind): AUROC, AUPRC "
        "and FPR at 95%% TPR of every OOD score (see vaelab score), in the report's 'ood' section",
    )
    p.add_argument("--ood-only", action="store_true", help="with --ood: skip the other measurements")
    p.add_argument("--ood-scores", default="all", metavar="NAME[,NAME...]|all", help="scores (all)")
    p.add_argument(
        "--ood-count",
        type=int,
        default=1000,
        metavar="N",
        help="images of the split and of each ood: set (1000)",
    )
    p.add_argument("--ood-iw-samples", type=int, default=None, metavar="K", help="the scores' K (default 1)")

    c = add_command(sub, "compare", run_compare)
    c.add_argument("runs", nargs="+", metavar="RUN", help="runs evaluated with 'vaelab evaluate'")
    c.add_argument("--out", default="comparison.md", metavar="FILE.md", help="the table (JSON beside it)")


def _output_dir(model: str) -> Path:
    """The run directory for a run, else the saved-model directory itself."""
    from vaelab.models.vae import resolve_model_dir

    model_dir = resolve_model_dir(model)
    return Path(model) if model_dir != Path(model) else model_dir


def run_evaluate(args: argparse.Namespace) -> int:
    """Log-likelihood, bits/dim, posterior health, reconstruction and sample quality.

    Evaluate a trained model on a dataset split: ELBO and its terms, the importance-weighted
    log-likelihood (Burda et al. 2015) with its standard error, bits/dim where the likelihood is over
    8-bit pixels, active units and per-dimension KL, reconstruction MSE / PSNR / SSIM, Frechet
    distance / precision / recall of samples in the feature space of a small classifier trained once
    on the dataset (cached), with density and coverage, each beside the same figures for held-out real
    images (the ceiling) and for N(0, I) samples through the same VAE (per class for a conditional
    model), and sharpness: the high-frequency power and Laplacian variance of
    reconstructions and samples over the data's (frequency by frequency in spectrum.png), and the
    fraction of near-binary pixels. Writes report.json, report.md and spectrum.png into the run
    directory (or the saved-model directory, or --out) and prints the table.
    """
    from vaelab.data import load_dataset
    from vaelab.evaluation import EvaluationOptions, evaluate_model, in_memory, write_report
    from vaelab.evaluation.tables import render_report

    check_minimums(args, {"iw_samples": 1, "n_samples": 4, "subset": 1, "batch_size": 1, "processes": 1})
    if args.inception_weights and not Path(args.inception_weights).is_file():
        raise MissingFileError(f"--inception-weights {args.inception_weights} does not exist")
    progress = not args.no_progress
    if args.ood_only and not args.ood:
        raise UsageError("--ood-only needs --ood OTHER")
    model, dataset = load_model_and_data(args, args.split, progress)
    if args.ood_only:
        return _ood_only(args, model, dataset)
    from vaelab.models.guidance import check_guidance

    model.layer_temperatures(args.temperature)  # a clear error before any work, as sampling would give
    check_guidance(model, args.guidance)
    if not args.no_sample_quality and len(dataset) < 4:  # the k-NN radii of precision / recall need k + 1
        raise DataError(
            f"the {args.split} split of {dataset.name!r} holds {len(dataset)} image(s); sample quality "
            "compares samples with at least 4 (or pass --no-sample-quality)"
        )
    data_cfg = model_data_config(args)
    train_set = feature_test = None
    if not args.no_sample_quality:
        # The feature classifier learns from (at most 60,000 of) the training images.
        train_set = in_memory(load_dataset(data_cfg, "train", progress=progress), FEATURE_TRAIN_LIMIT)
        feature_test = in_memory(load_dataset(data_cfg, "test", progress=progress))
    # The report's directory; the IW estimate journals its batches there as it goes, and a rerun of
    # the same evaluation after a crash resumes from them.
    out = Path(args.out) if args.out else _output_dir(args.model)
    options = EvaluationOptions(
        iw_samples=args.iw_samples,
        n_samples=args.n_samples,
        temperature=args.temperature,
        guidance=args.guidance,
        subset=args.subset,
        seed=args.seed,
        batch_size=args.batch_size,
        sample_quality=not args.no_sample_quality,
        inception_weights=args.inception_weights,
        progress=progress,
        precision=args.precision,
        compile=args.compile,
        processes=args.processes,
        journal_dir=str(out),
    )
    report = evaluate_model(
        model,
        dataset,
        binarize=args.binarize or data_cfg.binarize,
        split=args.split,
        train_set=train_set,
        feature_test_set=feature_test,
        options=options,
    )
    report["model"] = str(args.model)
    ood_text = ""
    if args.ood:
        from vaelab.cli.scoring import ood_report
        from vaelab.evaluation.ood.evaluate import render_ood

        report["ood"] = ood_report(args, model, dataset)
        ood_text = "\n" + render_ood(report["ood"])
    with writing("--out" if args.out else "MODEL", out):
        json_path, md_path = write_report(report, out)
        if ood_text:
            with md_path.open("a") as f:
                f.write(ood_text)
    print(render_report(report) + ood_text, end="")
    sys.stdout.flush()
    plot = " and spectrum.png" if (json_path.parent / "spectrum.png").is_file() else ""
    print(f"wrote {json_path} and {md_path}{plot}", file=sys.stderr)
    return 0


def _ood_only(args: argparse.Namespace, model: Any, dataset: Any) -> int:
    """--ood-only: the OOD section alone, written as ood.json and ood.md."""
    from vaelab.cli.scoring import ood_report
    from vaelab.evaluation.ood.evaluate import render_ood
    from vaelab.io.atomic import atomic_write_text

    section = ood_report(args, model, dataset) | {"model": str(args.model)}
    text = render_ood(section)
    out = Path(args.out) if args.out else _output_dir(args.model)
    with writing("--out" if args.out else "MODEL", out):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "ood.json", json.dumps(section, indent=2) + "\n")
        atomic_write_text(out / "ood.md", text)
    print(text, end="")
    sys.stdout.flush()
    print(f"wrote {out / 'ood.json'} and {out / 'ood.md'}", file=sys.stderr)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Side-by-side table of evaluation reports.

    Read report.json of each run (run directories, report directories or report.json files), print
    the reports side by side as Markdown and write it with its JSON.
    """
    from vaelab.evaluation.report import load_report
    from vaelab.evaluation.tables import comparison_json, render_comparison
    from vaelab.io.atomic import atomic_write_text

    reports = [load_report(r) for r in args.runs]
    names = [_short_name(r) for r in args.runs]
    table = render_comparison(reports, names)
    out = Path(args.out)
    json_out = out.with_suffix(".json")
    with writing("--out", out):
        atomic_write_text(out, table)
        atomic_write_text(json_out, json.dumps(comparison_json(reports, names), indent=2) + "\n")
    print(table, end="")
    sys.stdout.flush()
    print(f"wrote {out} and {json_out}", file=sys.stderr)
    return 0


def _short_name(run: str) -> str:
    path = Path(run)
    if path.name == "report.json":
        path = path.parent
    return path.name or str(path)
