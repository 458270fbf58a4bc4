"""The threshold that turns a score into "in" or "out", set on held-out in-distribution images at a chosen
false-positive rate, and stored beside the model as JSON (``ood-calibration.json``) with what it was
computed with: the score, K, the codec or background where they matter, the FPR, the dataset, n, and a
histogram of the calibration scores (the reference that plots and the web page draw).

The threshold t is the smallest calibration score such that at most floor(fpr x n) calibration images
score strictly above it; an image is "out" when its score is above t. On the calibration set itself the
flagged fraction is then floor(fpr x n) / n exactly (less only where scores tie at t).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaelab import __version__
from vaelab.errors import ModelLoadError, UsageError
from vaelab.io.atomic import atomic_write_text
from vaelab.models.vae import resolve_model_dir

CALIBRATION_NAME = "ood-calibration.json"
HISTOGRAM_BINS = 40


def threshold_at_fpr(scores: np.ndarray, fpr: float) -> float:
    """The threshold under which all but floor(fpr x n) of ``scores`` fall (see the module docstring)."""
    if not 0.0 <= fpr < 1.0:
        raise UsageError(f"the false-positive rate must lie in [0, 1); got {fpr}")
    values = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if len(values) == 0 or not np.isfinite(values).all():
        raise UsageError("calibration needs at least one image with a finite score")
    above = math.floor(fpr * len(values) + 1e-9)
    return float(values[len(values) - above - 1])


def symlog_edges(
    values: np.ndarray, bins: int = HISTOGRAM_BINS, scale: float | None = None, centre: float | None = None
) -> np.ndarray:
    """Bin edges spanning ``values``, uniform in sign(x - c) log(1 + |x - c| / s) around c (default: the
    median) with s the interquartile range (or ``scale``): the bulk gets fine bins and a tail thousands
    of units away still fits."""
    values = np.asarray(values, dtype=np.float64)
    c = float(np.median(values)) if centre is None else centre
    s = scale or float(np.subtract(*np.percentile(values, [75, 25]))) or 1.0
    forward, inverse = symlog(c, s)
    low, high = forward(np.array([values.min(), values.max()]))
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    edges = inverse(np.linspace(low, high, bins + 1))
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())  # despite rounding
    return edges


def symlog(centre: float, scale: float) -> tuple:
    """The transform of ``symlog_edges`` and its inverse (numpy functions), e.g. for a plot's axis."""

    def forward(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.sign(x - centre) * np.log1p(np.abs(x - centre) / scale)

    def inverse(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return centre + np.sign(t) * scale * np.expm1(np.abs(t))

    return forward, inverse


@dataclass
class Calibration:
    """One score's calibrated threshold and how it was made."""

    score: str
    threshold: float
    fpr: float
    iw_samples: int
    dataset: str
    n: int
    settings: dict[str, Any] = field(default_factory=dict)  # codec, background kind: what else it used
    observed_fpr: float = math.nan
    histogram: dict[str, list[float]] = field(default_factory=dict)  # {"edges": [...], "counts": [...]}
    quantiles: dict[str, float] = field(default_factory=dict)
    created: str = ""
    vaelab_version: str = __version__

    def is_out(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def matches(self, iw_samples: int, settings: dict[str, Any]) -> bool:
        """Whether scores computed with these settings may use this threshold."""
        return self.iw_samples == iw_samples and all(self.settings.get(k) == v for k, v in settings.items())


def calibrate(
    scores: np.ndarray, score: str, fpr: float, iw_samples: int, dataset: str, settings: dict[str, Any]
) -> Calibration:
    """A Calibration of ``score`` at ``fpr`` on in-distribution ``scores``."""
    values = np.asarray(scores, dtype=np.float64)
    threshold = threshold_at_fpr(values, fpr)
    edges = symlog_edges(values)
    counts, _ = np.histogram(values, bins=edges)
    quantiles = {
        f"q{int(q * 1000):03d}": float(np.quantile(values, q)) for q in (0.01, 0.05, 0.5, 0.95, 0.99)
    }
    return Calibration(
        score=score,
        threshold=threshold,
        fpr=fpr,
        iw_samples=iw_samples,
        dataset=dataset,
        n=len(values),
        settings=settings,
        observed_fpr=float((values > threshold).mean()),
        histogram={"edges": edges.tolist(), "counts": counts.astype(float).tolist()},
        quantiles=quantiles,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def calibration_path(model_path: str | Path) -> Path:
    return resolve_model_dir(model_path) / CALIBRATION_NAME


def load_calibrations(model_path: str | Path) -> dict[str, Calibration]:
    """Every score's calibration saved beside the model ({} when none)."""
    path = calibration_path(model_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: Calibration(**entry) for name, entry in data["scores"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{path} is not a readable calibration ({exc}); delete it and calibrate again"
        ) from None


def save_calibration(calibration: Calibration, model_path: str | Path) -> Path:
    """Store ``calibration`` beside the model, replacing that score's earlier one (others are kept)."""
    path = calibration_path(model_path)
    entries = {name: asdict(c) for name, c in load_calibrations(model_path).items()}
    entries[calibration.score] = asdict(calibration)
    atomic_write_text(
        path, json.dumps({"format": "vaelab-ood-calibration", "scores": entries}, indent=2) + "\n"
    )
    return path
