"""One evaluation report of a trained VAE on a dataset split: assembled, written and read back.

``evaluate_model`` runs the measurements of ``measure.py`` on the images ``eval_set.py`` picks and
returns a JSON-ready report in which every number states its K, the images it used and its standard
error; ``write_report`` saves it as ``report.json``, ``report.md`` (the Markdown of ``tables.py``) and
``spectrum.png`` (the power-spectrum ratio curves);
``load_report`` reads one back and checks its format.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vaelab.data import ImageDataset
from vaelab.errors import DataError, MissingFileError, UsageError
from vaelab.evaluation.eval_set import evaluation_inputs, evaluation_seeds
from vaelab.evaluation.measure import (
    EvaluationOptions,
    disentanglement_section,
    draw_samples,
    elbo_section,
    inception_section,
    log_likelihood_section,
    reconstruction_section,
    sample_quality_section,
    sample_sharpness_section,
)
from vaelab.evaluation.posterior import posterior_statistics
from vaelab.io.atomic import atomic_write_text
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed, environment

REPORT_FORMAT = "vaelab-evaluation"
REPORT_VERSION = 1
T = TypeVar("T")


def _timed(timings: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    """``fn()``, with its wall time recorded in ``timings[name]``."""
    t = time.perf_counter()
    result = fn()
    timings[name] = time.perf_counter() - t
    return result


def evaluate_model(
    model: VAE,
    dataset: ImageDataset,
    *,
    binarize: str = "none",
    split: str = "test",
    train_set: ImageDataset | None = None,
    feature_test_set: ImageDataset | None = None,
    options: EvaluationOptions | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` (a split of uint8 images) and return the report dict.

    ``binarize`` is how the model saw its training data; ``train_set`` (with labels) trains or finds
    the cached feature classifier, whose accuracy is measured on ``feature_test_set`` (default:
    ``dataset``). Without ``train_set`` the sample-quality section says it is unavailable; the
    sample-sharpness section needs no classifier and reads the same samples.
    """
    opts = options or EvaluationOptions()
    if dataset.image_shape != model.image_shape:
        raise DataError(f"dataset images are {dataset.image_shape} but the model expects {model.image_shape}")
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    binarize_seed, subset_seed = evaluation_seeds(opts.seed)
    inputs = evaluation_inputs(dataset, binarize, opts.subset, opts.seed)
    n = len(inputs)

    elbo = _timed(timings, "elbo", lambda: elbo_section(model, inputs, derive_seed(opts.seed, "elbo")))
    log_likelihood = log_likelihood_section(model, inputs, binarize, opts)
    timings["log_likelihood"] = log_likelihood["seconds"]  # the estimate's own time, FLOP probe excluded
    posterior = _timed(timings, "posterior", lambda: posterior_statistics(model, inputs).summary())
    recon = _timed(timings, "reconstruction", lambda: reconstruction_section(model, inputs))
    disentanglement = disentanglement_section(model, dataset)

    quality: dict[str, Any] = {"available": False, "reason": "disabled (--no-sample-quality)"}
    sharpness: dict[str, Any] = dict(quality)
    inception: dict[str, Any] = {"available": False, "reason": "sample quality disabled"}
    if opts.sample_quality:
        source = (train_set, feature_test_set or dataset) if train_set is not None else None
        drawn = _timed(timings, "samples", lambda: draw_samples(model, opts))
        quality, samples = _timed(
            timings, "sample_quality", lambda: sample_quality_section(model, dataset, source, opts, drawn)
        )
        sharpness = _timed(
            timings, "sample_sharpness", lambda: sample_sharpness_section(dataset, drawn, opts)
        )
        inception = inception_section(dataset, samples, opts.inception_weights)
    journal = log_likelihood.pop("journal", None)
    if journal:  # every section is measured: a rerun would start afresh, and the journal goes
        Path(journal).unlink(missing_ok=True)
    timings["total"] = time.perf_counter() - t_all
    config = model.config
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_summary": {
            "latent_dim": config.latent_dim,
            "encoder": config.encoder.name,
            "decoder": config.decoder.name,
            "likelihood": config.likelihood.name,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {
            "dataset": dataset.name,
            "split": split,
            "split_images": len(dataset),
            "images": n,
            "subset": opts.subset,
            "subset_seed": subset_seed if opts.subset is not None and opts.subset < len(dataset) else None,
            "binarize": binarize,
            "binarize_seed": binarize_seed if binarize == "dynamic" else None,
            "image_shape": list(model.image_shape),
        },
        "seed": opts.seed,
        "elbo": elbo,
        "log_likelihood": log_likelihood,
        "posterior": posterior,
        "reconstruction": recon,
        "sample_quality": quality,
        "sample_sharpness": sharpness,
        "inception_fid": inception,
        "disentanglement": disentanglement,
        "timings_s": timings,
        "environment": environment(),
        "command": sys.argv,
    }


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory`` (atomically), and ``spectrum.png``
    (the power-spectrum ratio curves) when the report has them; return the first two paths."""
    from vaelab.evaluation.sharpness import plot_spectrum_ratios
    from vaelab.evaluation.tables import render_report, spectra

    directory = Path(directory)
    json_path, md_path = directory / "report.json", directory / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(md_path, render_report(report))
    plot = directory / "spectrum.png"
    if curves := spectra(report):
        plot_spectrum_ratios(plot, curves)
    else:
        plot.unlink(missing_ok=True)  # not an earlier report's curves beside this one
    return json_path, md_path


def load_report(path: str | Path) -> dict[str, Any]:
    """A report from ``report.json``, or from a directory holding one; checks its format."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFileError(f"no evaluation report at {path}: run 'vaelab evaluate' first") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise UsageError(f"{path} is not a vaelab evaluation report")
    return report
