"""``vaelab score``: is each image like the model's training data? OOD scores per image, calibrated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaelab.cli.common import (
    add_model_command,
    check_minimums,
    check_suffix,
    load_model,
    model_data_config,
    writing,
)
from vaelab.cli.scoring import (
    background_for,
    background_spec,
    draw,
    score_names,
    settings_of,
    summary,
    usable_scores,
    write_rows,
)
from vaelab.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from vaelab.evaluation.ood.scores import DEFAULT_K, DEFAULT_SCORE, SCORES

    p = add_model_command(sub, "score", run_score, split=False)
    p.add_argument(
        "inputs",
        nargs="?",
        metavar="INPUTS",
        help="a folder or image file, .npz, IDX file, dataset name (mnist, digits, ...) or OOD set "
        "(ood:letters, ood:uniform-noise, ...); with --calibrate, default: the model's test split",
    )
    p.add_argument(
        "--score",
        default=DEFAULT_SCORE,
        metavar="NAME[,NAME...]|all",
        help=f"{', '.join(SCORES)} (default {DEFAULT_SCORE}; the first named decides in/out)",
    )
    p.add_argument("--out", default="scores.csv", metavar="FILE.csv|FILE.jsonl", help="per-image scores")
    p.add_argument("--plot", metavar="FILE.png", help="the histogram (default: --out with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no histogram")
    p.add_argument("--iw-samples", type=int, default=DEFAULT_K, metavar="K", help=f"default {DEFAULT_K}")
    p.add_argument("--codec", choices=["png", "webp"], default="png", help="complexity's codec (png)")
    p.add_argument("--regret-steps", type=int, default=20, metavar="N", help="likelihood_regret's steps")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="INPUTS are held-out in-distribution images: set each score's threshold at --fpr and "
        "store it beside the model (ood-calibration.json); later runs then say in or out",
    )
    p.add_argument("--fpr", type=float, default=0.05, help="calibration's false-positive rate (0.05)")
    p.add_argument(
        "--fit-background",
        action="store_true",
        help="(re)train the background model on the model's training split, and the density of states "
        "on the images training held out, and store both beside the model (done automatically the "
        "first time they are needed)",
    )
    p.add_argument(
        "--background",
        choices=["pixelcnn", "vae-perturbed"],
        default="pixelcnn",
        help="the background's kind (pixelcnn: small, local; vae-perturbed: Ren et al.)",
    )
    p.add_argument("--background-epochs", type=int, default=None, metavar="N", help="its epochs")
    p.add_argument("--background-minutes", type=float, default=0.0, metavar="M", help="its time limit")
    p.add_argument("--split", choices=["train", "test"], default="test", help="for a dataset-name INPUTS")
    p.add_argument("--count", type=int, default=2000, metavar="N", help="images of an ood: set (2000)")
    p.add_argument(
        "--no-resize",
        action="store_true",
        help="refuse images of another size or channel count instead of converting them",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the IW draws and OOD sets (0)")
    p.add_argument("--batch-size", type=int, default=500, metavar="B", help="images per batch (500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_score(args: argparse.Namespace) -> int:
    """Score images: how unlike the model's training data each one is (out-of-distribution detection).

    One score per image, higher meaning less like the training data: by default the density of states,
    how typical the image's log-likelihoods are together (the VAE's, PNG's and, for a Bernoulli VAE, a
    small local background model's; fitted once beside the model); or the likelihood ratio against
    the background, the negative importance-weighted log-likelihood, bits/dim, input complexity or
    likelihood regret (docs/ood.md says which to use and what each costs). Writes a CSV or JSONL row per
    image with its file name or index, and a histogram PNG against the in-distribution reference. With
    --calibrate, INPUTS are held-out in-distribution images and the threshold at --fpr is stored beside
    the model; later runs then say in or out per image. A file that cannot be decoded is reported and skipped.
    """
    from tqdm.auto import tqdm

    from vaelab.data import load_dataset
    from vaelab.data.inputs import Inputs, load_inputs
    from vaelab.evaluation import in_memory
    from vaelab.evaluation.ood.calibration import calibrate, load_calibrations, save_calibration
    from vaelab.evaluation.ood.scores import Scorer, presentation

    names = score_names(args.score)
    check_minimums(args, {"iw_samples": 1, "count": 1, "batch_size": 1, "regret_steps": 0})
    if not 0.0 < args.fpr < 1.0:
        raise UsageError(f"--fpr must lie strictly between 0 and 1; got {args.fpr}")
    check_suffix(args.out, (".csv", ".jsonl"), "--out")
    plot = None if args.no_plot else Path(args.plot or Path(args.out).with_suffix(".png"))
    if plot is not None:
        check_suffix(str(plot), (".png",), "--plot")
    if args.inputs is None and not args.calibrate and not args.fit_background:
        raise UsageError("give INPUTS (a folder, file, dataset name or ood:SET), or --calibrate")
    model = load_model(args)
    data_cfg = model_data_config(args)
    binarize = presentation(data_cfg)
    shape = model.image_shape
    if args.inputs is not None or args.calibrate:  # read first: a bad INPUTS fails before any fitting
        if args.inputs is None:
            test = in_memory(load_dataset(data_cfg, "test", progress=not args.no_progress))
            inputs = Inputs(
                test.images, [f"{test.name}:test[{i}]" for i in range(len(test))], f"{test.name} (test)"
            )
        else:
            inputs = load_inputs(
                args.inputs,
                shape,
                resize=not args.no_resize,
                split=args.split,
                count=args.count,
                seed=args.seed,
                data_dir=data_cfg.data_dir,
            )
    spec = background_spec(args)
    background = background_for(args, model, data_cfg, names, spec, refit=args.fit_background)
    if args.inputs is None and not args.calibrate:
        return 0  # --fit-background alone
    scorer = Scorer(
        model,
        binarize,
        args.iw_samples,
        background,
        args.codec,
        args.regret_steps,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    names = usable_scores(scorer, names, "score") if args.score == "all" else scorer.check(names)
    for failure in inputs.skipped:
        print(f"vaelab score: warning: skipped unreadable file {failure}", file=sys.stderr)
    if inputs.converted:
        print(
            f"converted {inputs.converted} image(s) to {shape[0]}x{shape[1]}x{shape[2]} (centred square "
            "crop, bicubic; --no-resize refuses them instead)",
            file=sys.stderr,
        )
    with tqdm(total=len(inputs.images), unit="img", desc="scoring", disable=args.no_progress) as bar:
        scores = scorer.score(inputs.images, names, progress=bar.update)
    calibrations = load_calibrations(args.model)
    if args.calibrate:
        with writing("MODEL", args.model):
            for name in names:
                c = calibrate(
                    scores[name], name, args.fpr, args.iw_samples, inputs.source, settings_of(scorer, name)
                )
                save_calibration(c, args.model)
                calibrations[name] = c
                print(
                    f"calibrated {name}: threshold {c.threshold:.6g} at FPR {c.fpr:g} "
                    f"({c.observed_fpr:.4f} of {c.n} calibration images above it)",
                    file=sys.stderr,
                )
    primary = names[0]
    cal = calibrations.get(primary)
    if cal is not None and not cal.matches(args.iw_samples, settings_of(scorer, primary)):
        print(
            f"the calibration of {primary} beside the model used K={cal.iw_samples} {cal.settings}: "
            "no in/out verdicts (calibrate again with these settings)",
            file=sys.stderr,
        )
        cal = None
    verdicts = None if cal is None else cal.is_out(scores[primary])
    with writing("--out", args.out):
        write_rows(Path(args.out), inputs.names, scores, verdicts)
    written = [args.out]
    if plot is not None:
        with writing("--plot", plot):
            draw(plot, args, scorer, primary, scores[primary], cal, inputs.source, data_cfg)
        written.append(str(plot))
    print(summary(scores, verdicts, primary, cal, inputs.source), end="")
    sys.stdout.flush()
    print(f"wrote {' and '.join(written)}", file=sys.stderr)
    return 0
