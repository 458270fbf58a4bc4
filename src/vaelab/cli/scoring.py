"""What ``vaelab score`` and ``vaelab evaluate --ood`` share: the score names, the background model
(fitted beside the model when missing), how images are presented, and the per-image output: rows,
histogram and summary."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.cli.common import check_at_least, check_minimums, writing

REFERENCE_IMAGES = 1000  # test images scored for the histogram's reference when there is no calibration


def score_names(text: str) -> list[str]:
    from vaelab.evaluation.ood.scores import SCORES, check_scores

    return list(SCORES) if text == "all" else check_scores(t.strip() for t in text.split(",") if t.strip())


def usable_scores(scorer: Any, names: list[str], command: str) -> list[str]:
    """For "all": the scores this model can give, with a note on stderr for each it cannot."""
    names, why = scorer.usable(names)
    for name, reason in why.items():
        print(f"vaelab {command}: note: {name} left out: {reason}", file=sys.stderr)
    return names


def settings_of(scorer: Any, name: str) -> dict[str, Any]:
    """What besides K a score's value depends on (a calibration must match it)."""
    if name == "complexity":
        return {"codec": scorer.codec}
    if name == "likelihood_ratio":
        kind = scorer.background.spec.kind if scorer.background else None
        return {"background": kind, "codec": scorer.codec if scorer.mixes_codec else None}
    if name == "density_of_states":
        states = scorer.background.states.info if scorer.background and scorer.background.states else {}
        kind = scorer.background.spec.kind if scorer.background else None
        return {"background": kind, "codec": states.get("codec"), "states_n": states.get("n")}
    if name == "likelihood_regret":
        return {"regret_steps": scorer.regret_steps}
    return {}


def background_spec(args: argparse.Namespace) -> Any:
    """The background the options ask for (kind, epochs, time limit, seed)."""
    from vaelab.evaluation.ood.background import BackgroundSpec

    spec = BackgroundSpec(kind=args.background, max_minutes=args.background_minutes, seed=args.seed)
    if args.background_epochs is not None:
        check_at_least(args.background_epochs, 1, "--background-epochs")
        spec = BackgroundSpec(**{**spec.__dict__, "epochs": args.background_epochs})
    return spec


def background_for(
    args: argparse.Namespace, model: Any, data_cfg: Any, names: list[str], spec: Any, *, refit: bool = False
) -> Any:
    """The background beside the model ``args.model``, fitted first when ``refit`` or when a score of
    ``names`` needs one and none is there, with its density of states fitted on the images training held
    out; both are then saved beside the model (a background saved without the density gets it added)."""
    from vaelab.data import load_dataset
    from vaelab.evaluation import in_memory
    from vaelab.evaluation.ood.background import load_background, save_background
    from vaelab.evaluation.ood.scores import SCORES, fit_background_and_states

    model_path, progress = args.model, not args.no_progress
    needed = any(SCORES[n].needs_background for n in names)
    background = None if refit else load_background(model_path, model.device)
    if background is not None and (background.states is not None or "density_of_states" not in names):
        return background
    if background is None and not (needed or refit):
        return None
    train = in_memory(load_dataset(data_cfg, "train", progress=progress))
    if background is None:
        print(
            f"fitting the background model ({spec.kind}, up to {spec.epochs} epochs on {len(train)} "
            f"{train.name} training images) and the density of states; both are saved beside the model",
            file=sys.stderr,
        )
    else:
        print("fitting the density of states (the background beside the model has none)", file=sys.stderr)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    background = fit_background_and_states(model, train, data_cfg, spec, background, log)
    with writing("MODEL", model_path):
        folder = save_background(background, model_path)
    print(f"wrote {folder}", file=sys.stderr)
    return background


def write_rows(path: Path, names: list[str], scores: dict[str, np.ndarray], out: np.ndarray | None) -> None:
    """One row per image: its index, name, every score and (when calibrated) in or out."""
    from vaelab.io.atomic import atomic_write_text

    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"index": i, "name": name, **{k: float(v[i]) for k, v in scores.items()}}
        if out is not None:
            row["verdict"] = "out" if out[i] else "in"
        rows.append(row)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def draw(
    plot: Path,
    args: argparse.Namespace,
    scorer: Any,
    name: str,
    values: np.ndarray,
    cal: Any,
    source: str,
    data_cfg: Any,
) -> None:
    """The histogram against the calibration's, else against scored test images of the model's data."""
    import torch

    from vaelab.data import load_dataset
    from vaelab.evaluation.ood.plot import plot_scores

    if cal is not None:
        plot_scores(
            plot,
            values,
            name,
            reference_histogram=cal.histogram,
            threshold=cal.threshold,
            reference_label=f"calibration: {cal.dataset}",
            inputs_label=source,
        )
        return
    test = load_dataset(data_cfg, "test", progress=False)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:REFERENCE_IMAGES]
    reference = scorer.score(test.images[pick.sort().values], [name])[name]
    plot_scores(
        plot, values, name, reference=reference, reference_label=f"{test.name} test", inputs_label=source
    )


def summary(
    scores: dict[str, np.ndarray], out: np.ndarray | None, primary: str, cal: Any, source: str
) -> str:
    lines = [
        f"{len(next(iter(scores.values())))} images from {source}",
        "",
        "| score | median | 5% | 95% |",
        "|---|---:|---:|---:|",
    ]
    for name, v in scores.items():
        q05, q50, q95 = np.quantile(v, [0.05, 0.5, 0.95])
        lines.append(f"| {name} | {q50:.4g} | {q05:.4g} | {q95:.4g} |")
    if out is not None:
        lines += [
            "",
            f"{int(out.sum())} of {len(out)} out of distribution by {primary} > "
            f"{cal.threshold:.6g} (calibrated at FPR {cal.fpr:g} on {cal.dataset})",
        ]
    return "\n".join(lines) + "\n"


def ood_report(args: argparse.Namespace, model: Any, dataset: Any) -> dict[str, Any]:
    """The OOD section: every asked score's separation of the split from each --ood set."""
    from vaelab.cli.common import model_data_config
    from vaelab.data import ImageDataset
    from vaelab.data.inputs import load_inputs
    from vaelab.data.ood_sets import default_pairs
    from vaelab.evaluation import seeded_subset
    from vaelab.evaluation.ood.background import BackgroundSpec
    from vaelab.evaluation.ood.evaluate import ood_section
    from vaelab.evaluation.ood.scores import DEFAULT_K, Scorer, presentation
    from vaelab.runtime import derive_seed

    check_minimums(args, {"ood_count": 2, "ood_iw_samples": 1})
    names = score_names(args.ood_scores)
    data_cfg = model_data_config(args)
    binarize = presentation(data_cfg)
    reference = seeded_subset(dataset, min(args.ood_count, len(dataset)), derive_seed(args.seed, "ood"))
    default = [f"ood:{name}" for name in default_pairs(model.image_shape)]
    sources = [n for o in args.ood for n in (default if o == "default" else [o])]
    others = {}
    for source in sources:
        inputs = load_inputs(
            source, model.image_shape, count=args.ood_count, seed=args.seed, data_dir=data_cfg.data_dir
        )
        for failure in inputs.skipped:
            print(f"vaelab evaluate: warning: skipped unreadable file {failure}", file=sys.stderr)
        classes = inputs.class_names
        others[source] = ImageDataset(
            inputs.images, inputs.labels, source, None if classes is None else len(classes), classes
        )
    background = background_for(args, model, data_cfg, names, BackgroundSpec(seed=args.seed))
    scorer = Scorer(model, binarize, args.ood_iw_samples or DEFAULT_K, background, seed=args.seed)
    if args.ood_scores == "all":
        names = usable_scores(scorer, names, "evaluate")
    return ood_section(scorer, reference, others, names) | {"split": args.split}
