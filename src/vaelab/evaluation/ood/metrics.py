"""How well a score separates in-distribution from out-of-distribution images: AUROC, AUPRC and the
false-positive rate at 95% true-positive rate, with the OOD images as the positive class and higher
scores meaning "more anomalous" (every score of ``scores.py`` is oriented so).

scikit-learn computes them (``roc_auc_score``, ``average_precision_score``, ``roc_curve``): AUROC is the
probability that a random OOD image scores above a random in-distribution one (ties count one half),
so 1.0 is a perfect separator, 0.5 chance and 0.0 a perfectly reversed one; AUPRC is the average
precision with OOD as positives (its chance level is the OOD fraction); FPR95 is the fraction of
in-distribution images flagged when the threshold catches 95% of the OOD ones (lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _labelled(in_dist: Sequence[float] | np.ndarray, ood: Sequence[float] | np.ndarray):
    a, b = np.asarray(in_dist, dtype=np.float64).ravel(), np.asarray(ood, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"need scores of both kinds; got {len(a)} in-distribution and {len(b)} OOD")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    return np.concatenate([a, b]), np.concatenate([np.zeros(len(a)), np.ones(len(b))])


def auroc(in_dist: Sequence[float] | np.ndarray, ood: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (OOD positive, higher score = more anomalous)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = _labelled(in_dist, ood)
    return float(roc_auc_score(labels, scores))


def auprc(in_dist: Sequence[float] | np.ndarray, ood: Sequence[float] | np.ndarray) -> float:
    """Area under the precision-recall curve (average precision), OOD positive."""
    from sklearn.metrics import average_precision_score

    scores, labels = _labelled(in_dist, ood)
    return float(average_precision_score(labels, scores))


def fpr_at_tpr(
    in_dist: Sequence[float] | np.ndarray, ood: Sequence[float] | np.ndarray, tpr: float = 0.95
) -> float:
    """The smallest false-positive rate at which at least ``tpr`` of the OOD images are caught."""
    from sklearn.metrics import roc_curve

    scores, labels = _labelled(in_dist, ood)
    fpr, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def separation(in_dist: Sequence[float] | np.ndarray, ood: Sequence[float] | np.ndarray) -> dict[str, float]:
    """The three numbers and the counts, as reports give them."""
    return {
        "auroc": auroc(in_dist, ood),
        "auprc": auprc(in_dist, ood),
        "fpr95": fpr_at_tpr(in_dist, ood, 0.95),
        "n_in": len(np.ravel(in_dist)),
        "n_ood": len(np.ravel(ood)),
    }
