"""The histogram ``vaelab score`` writes: the scored images against the in-distribution reference, on
bins that are fine in the reference's bulk and stretch logarithmically to far tails (``symlog_edges``),
with the calibrated threshold when there is one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.evaluation.ood.calibration import symlog, symlog_edges


def plot_scores(
    path: Path,
    scores: np.ndarray,
    score: str,
    reference: np.ndarray | None = None,
    reference_histogram: dict[str, list[float]] | None = None,
    reference_label: str = "in-distribution reference",
    inputs_label: str = "scored images",
    threshold: float | None = None,
) -> Path:
    """Write the PNG: ``scores`` against ``reference`` (raw scores) or a stored ``reference_histogram``
    ({"edges", "counts"}), each normalised to its own total so sets of any size compare."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay untouched

    scores = np.asarray(scores, dtype=np.float64)
    if reference is not None:
        ref_values = np.asarray(reference, dtype=np.float64)
        centre = float(np.median(ref_values))
        scale = float(np.subtract(*np.percentile(ref_values, [75, 25]))) or 1.0
        ends = ref_values[[ref_values.argmin(), ref_values.argmax()]]
    else:
        assert reference_histogram is not None
        ref_values = None
        ref_edges = np.asarray(reference_histogram["edges"])
        counts = np.asarray(reference_histogram["counts"])
        middles = (ref_edges[:-1] + ref_edges[1:]) / 2
        centre = float(middles[np.searchsorted(np.cumsum(counts), counts.sum() / 2)])
        scale = float(np.median(np.diff(ref_edges))) * 4 or 1.0
        ends = ref_edges[[0, -1]]
    everything = np.concatenate([ends, scores])
    edges = symlog_edges(everything, bins=60, scale=scale, centre=centre)
    fig = Figure(figsize=(7, 3.6), dpi=110)
    ax = fig.subplots()
    if ref_values is not None:
        weights = np.full(len(ref_values), 1 / len(ref_values))
        ax.hist(
            ref_values,
            bins=edges,
            weights=weights,
            alpha=0.6,
            color="#4477aa",
            label=f"{reference_label} (n={len(ref_values)})",
        )
    else:
        ax.stairs(
            counts / max(counts.sum(), 1),
            ref_edges,
            fill=True,
            alpha=0.6,
            color="#4477aa",
            label=f"{reference_label} (n={int(counts.sum())})",
        )
    ax.hist(
        scores,
        bins=edges,
        weights=np.full(len(scores), 1 / max(len(scores), 1)),
        alpha=0.6,
        color="#ee6677",
        label=f"{inputs_label} (n={len(scores)})",
    )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
    # An axis uniform in the bins' transform: the bars are equally wide, the bulk and far tails both show.
    forward, inverse = symlog(centre, scale)
    ax.set_xscale("function", functions=(forward, inverse))
    ticks = inverse(np.linspace(*forward(edges[[0, -1]]), 7))
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"{score} (higher: less like the training data; log-stretched tails)")
    ax.set_ylabel("fraction of images")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
