"""One evaluation of a trained VAE on a dataset split: every number, with what it was measured on.

``evaluate_model`` runs the ELBO, the importance-weighted log-likelihood, posterior health,
reconstruction quality and sample quality, and returns a JSON-ready report in which every number
states its K, the images it used and its standard error. ``write_report`` saves it as
``report.json`` and ``report.md``; ``quick_evaluate`` is the cheap version the training loop logs.

The binarised-MNIST protocol: a model trained with dynamic binarisation is evaluated on the test
set binarised *once* with a recorded seed (the same binary images for every metric and every run
with that seed); ``--subset N`` then takes a seeded random subset of those images.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaelab.data import ImageDataset, PackedDataset, to_float
from vaelab.evaluation.elbo import elbo_per_image
from vaelab.evaluation.likelihood import (
    DEFAULT_MAX_ELEMENTS,
    evaluate_log_likelihood,
    mean_and_se,
    nats_to_bits_per_dim,
)
from vaelab.evaluation.posterior import posterior_statistics
from vaelab.evaluation.reconstruction import reconstruction_metrics
from vaelab.evaluation.sample_quality import compare_features, inception_fid
from vaelab.io.atomic import atomic_write_text
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed, environment

REPORT_FORMAT = "vaelab-evaluation"
REPORT_VERSION = 1
_BINARIZE_BATCH = 10_000  # fixed, so the binarised set does not depend on any batch-size option


@dataclass(frozen=True)
class EvaluationOptions:
    """What to measure and how much: the knobs of ``vaelab evaluate``."""

    iw_samples: int = 5000
    n_samples: int = 10_000
    subset: int | None = None
    seed: int = 0
    batch_size: int = 100  # images per IW batch (capped further by ``max_elements``)
    max_elements: int = DEFAULT_MAX_ELEMENTS
    temperature: float = 1.0
    k_nearest: int = 3
    sample_quality: bool = True
    inception_weights: str | None = None
    progress: bool = False
    precision: str = "fp32"  # of the IW estimator's matmuls: fp32 or bf16 (densities stay fp32)
    compile: bool = False  # the IW estimator through torch.compile (pays for K in the thousands)


def in_memory(dataset: ImageDataset | PackedDataset, limit: int | None = None) -> ImageDataset:
    """An in-memory ``ImageDataset`` from either kind of dataset; ``limit`` keeps a packed set's first
    images (packed data are shuffled when packed, so its first images are a fair sample)."""
    if isinstance(dataset, ImageDataset):
        return dataset
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return dataset.range(0, n).to_memory()


def fixed_inputs(dataset: ImageDataset, binarize: str, seed: int) -> ImageDataset:
    """The evaluation images, binarised once (stored as uint8 0/255) with a generator seeded by ``seed``.

    ``binarize="none"`` returns ``dataset`` unchanged; ``static`` thresholds; ``dynamic`` draws each
    pixel from Bernoulli(grey / 255) once, so every metric then sees the same binary images.
    """
    if binarize == "none":
        return dataset
    gen = torch.Generator().manual_seed(seed)
    parts = [
        to_float(dataset.images[i : i + _BINARIZE_BATCH], binarize, generator=gen).mul(255).to(torch.uint8)
        for i in range(0, len(dataset), _BINARIZE_BATCH)
    ]
    images = torch.cat(parts) if parts else dataset.images
    return ImageDataset(images, dataset.labels, dataset.name, dataset.num_classes, dataset.class_names)


def seeded_subset(dataset: ImageDataset, n: int | None, seed: int) -> ImageDataset:
    """``n`` images chosen at random with ``seed`` (kept in dataset order), or all of them."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise ValueError(f"--subset must be at least 1; got {n}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[:n].sort().values)


def likelihood_unit(model: VAE, binarize: str) -> tuple[int | None, str]:
    """(levels for bits/dim or None, a sentence on what the likelihood is over)."""
    name = model.config.likelihood.name
    if binarize != "none":
        return None, (
            f"{name} likelihood over binarised pixels (binarize={binarize}): nats per image is the "
            "literature's unit; bits/dim over 8-bit pixels does not apply"
        )
    if getattr(model.likelihood, "discrete", False):
        # levels=1: the likelihood is already a normalised distribution over the 256 pixel levels
        # (logistic_mixture, discretized_gaussian), so bits/dim is NLL / (D ln 2) with no bin-width offset.
        return 1, (
            f"{name} (discretised): a normalised distribution over the 256 levels of each 8-bit "
            "pixel; bits/dim = NLL / (D ln 2)"
        )
    if name == "gaussian":
        return 256, (
            "Gaussian density over pixels in [0, 1] evaluated at the 8-bit values (no dequantisation); "
            "bits/dim = (NLL + D ln 256) / (D ln 2)"
        )
    return None, (
        "Bernoulli likelihood on grey levels is a cross-entropy, not a normalised likelihood over "
        "8-bit pixels: no bits/dim, and its nats are not comparable with log-likelihoods"
    )


def _speed(ll: Any, device: torch.device | str) -> dict[str, Any]:
    """How close the estimate ran to this machine's measured matmul peak: its counted FLOPs, their rate,
    and the seconds those FLOPs need at the fp32 (and, for bf16, the bf16) peak of one process."""
    if not ll.flops or ll.seconds <= 0:
        return {}
    from vaelab.perf import matmul_peak

    peaks = {p: matmul_peak(p, device) for p in dict.fromkeys(("fp32", ll.precision))}
    return {
        "gflop": ll.flops / 1e9,
        "gflop_per_s": ll.flops / ll.seconds / 1e9,
        "peak_gflop_per_s": {p: v / 1e9 for p, v in peaks.items()},
        "seconds_at_peak": {p: ll.flops / v for p, v in peaks.items()},
        "time_over_fp32_peak_time": ll.seconds / (ll.flops / peaks["fp32"]),
    }


def _log_likelihood_section(
    ll: Any, levels: int | None, note: str, dims: int, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    mean, se = ll.mean_and_se()
    section: dict[str, Any] = {
        "iw_samples": ll.iw_samples,
        "images": ll.images,
        "log_px": mean,
        "log_px_se": se,
        "nll": -mean,
        "nll_se": se,
        "estimator": "log (1/K) sum_k p(x,z_k)/q(z_k|x), z_k ~ q(z|x) (Burda et al. 2015)",
        "unit_note": note,
        "by_k": {str(k): dict(zip(("log_px", "log_px_se"), ll.mean_and_se(k), strict=True)) for k in ll.by_k},
        "seconds": ll.seconds,
        "precision": ll.precision,
        "compiled": ll.compiled,
        **_speed(ll, device),
    }
    if levels is not None:
        section["bits_per_dim"] = nats_to_bits_per_dim(-mean, dims, levels)
        section["bits_per_dim_se"] = se / (dims * 0.6931471805599453)
    smaller = [k for k in ll.by_k if k < ll.iw_samples]
    if smaller:
        k_low = max(smaller)
        gap_mean, gap_se = mean_and_se(ll.log_px - ll.by_k[k_low])
        section["k_gap"] = {"k_low": k_low, "k_high": ll.iw_samples, "gap": gap_mean, "gap_se": gap_se}
    return section


def _sample_quality_section(
    model: VAE,
    reference: ImageDataset,
    feature_source: tuple[ImageDataset, ImageDataset | None] | None,
    opts: EvaluationOptions,
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """FD / precision / recall of model samples against ``reference``, plus the samples drawn."""
    from vaelab.evaluation.features import load_feature_space
    from vaelab.generation import sample

    if feature_source is None:
        return {"available": False, "reason": "no training split to train the feature classifier on"}, None
    try:
        space = load_feature_space(*feature_source, progress=opts.progress)
    except ValueError as exc:
        return {"available": False, "reason": str(exc)}, None
    seed = derive_seed(opts.seed, "samples")
    samples = sample(model, opts.n_samples, temperature=opts.temperature, seed=seed)
    real = space.embed(reference.images)
    metrics = compare_features(real, space.embed(samples), k=opts.k_nearest, seed=opts.seed)
    return {
        "available": True,
        "feature_space": space.describe(),
        "classifier_test_accuracy": space.test_accuracy,
        "classifier_test_images": space.test_images,
        "samples": opts.n_samples,
        "sample_kind": "decoder mean images of z ~ p(z) (pixel probabilities for a Bernoulli likelihood)",
        "temperature": opts.temperature,
        "sample_seed": seed,
        "reference": f"{reference.name} split images as stored (grey levels), {len(reference)} images",
        "fd_se_kind": "bootstrap over both feature sets (20 replicates)",
        "pr_se_kind": "binomial, k-NN radii held fixed",
        **metrics,
    }, samples


def _disentanglement_section(model: VAE, dataset: ImageDataset) -> dict[str, Any]:
    """MIG of the posterior means over the whole split, for datasets with known factors (dsprites)."""
    if dataset.factors is None:
        return {"available": False, "reason": f"dataset {dataset.name!r} records no generative factors"}
    if model.num_classes:
        return {"available": False, "reason": "MIG is measured for unconditional models"}
    from vaelab.evaluation.disentanglement import mutual_information_gap
    from vaelab.generation.latent import encode_mean

    t = time.perf_counter()
    z = encode_mean(model, to_float(dataset.images, "none"))
    score = mutual_information_gap(z, dataset.factors, dataset.factor_names)
    return {"available": True, "seconds": time.perf_counter() - t, **score}


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
    ``dataset``). Without ``train_set`` the sample-quality section says it is unavailable.
    """
    opts = options or EvaluationOptions()
    if dataset.image_shape != model.image_shape:
        raise ValueError(
            f"dataset images are {dataset.image_shape} but the model expects {model.image_shape}"
        )
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    binarize_seed = derive_seed(opts.seed, "binarize")
    subset_seed = derive_seed(opts.seed, "subset")
    inputs = seeded_subset(fixed_inputs(dataset, binarize, binarize_seed), opts.subset, subset_seed)
    n = len(inputs)
    c, h, w = model.image_shape

    t = time.perf_counter()
    terms = elbo_per_image(model, inputs, seed=derive_seed(opts.seed, "elbo"))
    elbo: dict[str, Any] = {"images": n, "posterior_samples_per_image": 1}
    for name, values in terms.items():
        elbo[name], elbo[f"{name}_se"] = mean_and_se(values)
    timings["elbo"] = time.perf_counter() - t

    levels, note = likelihood_unit(model, binarize)
    ll = evaluate_log_likelihood(
        model,
        inputs,
        iw_samples=opts.iw_samples,
        batch_size=opts.batch_size,
        max_elements=opts.max_elements,
        seed=derive_seed(opts.seed, "iw"),
        progress=opts.progress,
        precision=opts.precision,
        compile=opts.compile,
    )
    timings["log_likelihood"] = ll.seconds

    t = time.perf_counter()
    posterior = posterior_statistics(model, inputs).summary()
    timings["posterior"] = time.perf_counter() - t
    t = time.perf_counter()
    recon = {"target": "the model's inputs (binarised as above)", **reconstruction_metrics(model, inputs)}
    timings["reconstruction"] = time.perf_counter() - t

    disentanglement = _disentanglement_section(model, dataset)

    quality: dict[str, Any] = {"available": False, "reason": "disabled (--no-sample-quality)"}
    inception: dict[str, Any] = {"available": False, "reason": "sample quality disabled"}
    if opts.sample_quality:
        t = time.perf_counter()
        source = (train_set, feature_test_set or dataset) if train_set is not None else None
        quality, samples = _sample_quality_section(model, dataset, source, opts)
        timings["sample_quality"] = time.perf_counter() - t
        if samples is None:
            samples = torch.zeros(0)
        inception = (
            inception_fid(dataset.images, samples, opts.inception_weights)
            if len(samples)
            else {"available": False, "reason": "no samples"}
        )
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
            "image_shape": [c, h, w],
        },
        "seed": opts.seed,
        "elbo": elbo,
        "log_likelihood": _log_likelihood_section(ll, levels, note, c * h * w, model.device),
        "posterior": posterior,
        "reconstruction": recon,
        "sample_quality": quality,
        "inception_fid": inception,
        "disentanglement": disentanglement,
        "timings_s": timings,
        "environment": environment(),
        "command": sys.argv,
    }


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory`` (atomically); return both paths."""
    from vaelab.evaluation.tables import render_report

    directory = Path(directory)
    json_path, md_path = directory / "report.json", directory / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(md_path, render_report(report))
    return json_path, md_path


def load_report(path: str | Path) -> dict[str, Any]:
    """A report from ``report.json``, or from a directory holding one; checks its format."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no evaluation report at {path}: run 'vaelab evaluate' first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path} is not a vaelab evaluation report")
    return report


def quick_evaluate(
    model: VAE,
    dataset: ImageDataset | PackedDataset,
    *,
    iw_samples: int,
    images: int,
    binarize: str,
    seed: int,
) -> dict[str, float | int]:
    """The cheap evaluation the training loop logs: IW log-likelihood at a small K on a fixed seeded
    subset, and active units. Keys start with ``eval_``; K and the images used are logged with them."""
    if not isinstance(dataset, ImageDataset):
        dataset = in_memory(dataset, images)
    inputs = seeded_subset(fixed_inputs(dataset, binarize, seed), images, seed)
    if len(inputs) == 0:
        return {}
    ll = evaluate_log_likelihood(model, inputs, iw_samples=iw_samples, seed=seed)
    mean, se = ll.mean_and_se()
    return {
        "eval_iw_samples": iw_samples,
        "eval_images": len(inputs),
        "eval_log_px": mean,
        "eval_log_px_se": se,
        "eval_nll": -mean,
        "eval_active_units": posterior_statistics(model, inputs).active_units,
        "eval_seconds": ll.seconds,
    }
