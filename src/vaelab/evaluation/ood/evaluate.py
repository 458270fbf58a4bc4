"""How well each score tells a model's in-distribution images from other sets: AUROC, AUPRC and FPR at
95% TPR per score and pair, and each score's speed, as ``vaelab evaluate --ood`` and the ``ood`` benchmark
report them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from vaelab.data import ImageDataset
from vaelab.evaluation.ood.metrics import auroc, separation
from vaelab.evaluation.ood.scores import SCORES, Scorer

HARDEST = 5  # classes named per score for a set made of classes


def timed_scores(
    scorer: Scorer, data: ImageDataset, names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict]:
    """Every score of ``names`` on ``data``, and the images per second of each computed alone (the
    scores share their log-likelihood when computed together; alone is what a user of one pays)."""
    scores: dict[str, np.ndarray] = {}
    speed: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        scores[name] = scorer.score(data, [name])[name]
        speed[name] = len(data) / max(time.perf_counter() - start, 1e-9)
    return scores, speed


def hardest_classes(
    reference: np.ndarray, scores: np.ndarray, data: ImageDataset, count: int = HARDEST
) -> list[tuple[str, float, int]]:
    """For a set made of classes (``letters``): the ``count`` classes whose images this score separates
    worst from the reference, as (class, AUROC of that class alone, images of it), worst first."""
    if data.labels is None or data.class_names is None:
        return []
    labels = data.labels.numpy()
    rows = [
        (name, auroc(reference, scores[labels == c]), int((labels == c).sum()))
        for c, name in enumerate(data.class_names)
        if (labels == c).any()
    ]
    return sorted(rows, key=lambda row: row[1])[:count]


def ood_section(
    scorer: Scorer,
    reference: ImageDataset,
    others: dict[str, ImageDataset],
    names: Sequence[str],
) -> dict[str, Any]:
    """The report: per OOD set, per score, the separation from ``reference`` (higher score = OOD)."""
    names = scorer.check(names)
    ref_scores, speed = timed_scores(scorer, reference, names)
    pairs: dict[str, Any] = {}
    for label, data in others.items():
        got = scorer.score(data, names)
        pairs[label] = {
            "n": len(data),
            "scores": {name: separation(ref_scores[name], got[name]) for name in names},
            "median": {name: float(np.median(got[name])) for name in names},
        }
        if data.class_names is not None:
            pairs[label]["hardest"] = {n: hardest_classes(ref_scores[n], got[n], data) for n in names}
    return {
        "reference": {"dataset": reference.name, "n": len(reference)},
        "iw_samples": scorer.iw_samples,
        "codec": scorer.codec,
        "regret_steps": scorer.regret_steps,
        "background": None if scorer.background is None else scorer.background.info,
        "scores": {
            name: {
                "title": SCORES[name].title,
                "cost": SCORES[name].cost,
                "images_per_s": speed[name],
                "reference_median": float(np.median(ref_scores[name])),
            }
            for name in names
        },
        "pairs": pairs,
    }


def render_ood(section: dict[str, Any]) -> str:
    """The section as Markdown: one AUROC table (pairs x scores), then AUPRC / FPR95, then speeds."""
    names = list(section["scores"])
    ref = section["reference"]
    lines = [
        f"## Out-of-distribution detection (reference: {ref['dataset']}, n={ref['n']}; "
        f"K={section['iw_samples']})",
        "",
    ]
    for metric, title in (
        ("auroc", "AUROC (higher is better)"),
        ("fpr95", "FPR at 95% TPR (lower is better)"),
        ("auprc", "AUPRC, OOD positive"),
    ):
        lines += [f"{title}:", "", "| OOD set | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for label, pair in section["pairs"].items():
            cells = [f"{pair['scores'][n][metric]:.3f}" for n in names]
            lines.append(f"| {label} (n={pair['n']}) | " + " | ".join(cells) + " |")
        lines.append("")
    hardest = [
        f"Hardest classes of {label} for {name} (AUROC of each alone): "
        + ", ".join(f"{c} {a:.2f}" for c, a, _ in rows)
        for label, pair in section["pairs"].items()
        for name, rows in pair.get("hardest", {}).items()
    ]
    lines += [*hardest, ""] if hardest else []
    lines += ["| score | images/s | cost |", "|---|---:|---|"]
    for name, info in section["scores"].items():
        lines.append(f"| {name} | {info['images_per_s']:.0f} | {info['cost']} |")
    return "\n".join(lines) + "\n"
