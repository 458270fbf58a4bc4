"""The measurements of an evaluation, each returned as a JSON-ready section of the report.

Every section states what its numbers were measured on (K, images, seeds, feature space) and carries
standard errors, so a section read on its own still says what it means. ``report.evaluate_model``
runs them in order and assembles the report; ``quick_evaluate`` is the cheap version the training
loop logs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from vaelab.data import ImageDataset, PackedDataset, to_float
from vaelab.errors import DataError
from vaelab.evaluation.dataset_elbo import elbo_per_image
from vaelab.evaluation.dataset_likelihood import evaluate_log_likelihood
from vaelab.evaluation.eval_set import fixed_inputs, in_memory, seeded_subset
from vaelab.evaluation.likelihood import (
    DEFAULT_MAX_ELEMENTS,
    LN2,
    mean_and_se,
    nats_to_bits_per_dim,
)
from vaelab.evaluation.posterior import posterior_statistics
from vaelab.evaluation.reconstruction import reconstruction_metrics
from vaelab.evaluation.sample_quality import compare_features, inception_fid
from vaelab.evaluation.sharpness import sample_sharpness
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed

SAMPLE_KIND = "decoder mean images of z ~ p(z) (pixel probabilities for a Bernoulli likelihood)"


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
    guidance: float = 1.0  # classifier-free guidance of a conditional model trained with label dropout
    k_nearest: int = 3
    sample_quality: bool = True
    inception_weights: str | None = None
    progress: bool = False
    precision: str = "fp32"  # of the IW estimator's matmuls: fp32 or bf16 (densities stay fp32)
    compile: bool = False  # the IW estimator through torch.compile (pays for K in the thousands)
    processes: int = 1  # CPU worker processes the IW estimate's batches are shared out over
    journal_dir: str | None = None  # where the IW estimate journals its batches (and resumes from)


def elbo_section(model: VAE, inputs: ImageDataset, seed: int) -> dict[str, Any]:
    """Mean ELBO, log p(x|z) and KL with their standard errors, one posterior sample per image."""
    section: dict[str, Any] = {"images": len(inputs), "posterior_samples_per_image": 1}
    for name, values in elbo_per_image(model, inputs, seed=seed).items():
        section[name], section[f"{name}_se"] = mean_and_se(values)
    return section


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


def log_likelihood_section(
    model: VAE, inputs: ImageDataset, binarize: str, opts: EvaluationOptions
) -> dict[str, Any]:
    """The importance-weighted log p(x) at K = ``opts.iw_samples`` and the nested smaller Ks, in nats
    and (where the likelihood allows) bits/dim, with the paired gap to the largest smaller K."""
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
        processes=opts.processes,
        journal_dir=opts.journal_dir,
    )
    levels, note = likelihood_unit(model, binarize)
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
        "processes": ll.processes,
        "resumed_batches": ll.resumed_batches,
        "journal": str(ll.journal) if ll.journal else None,
        **ll.speed(model.device),
    }
    if levels is not None:
        dims = math.prod(model.image_shape)
        section["bits_per_dim"] = nats_to_bits_per_dim(-mean, dims, levels)
        section["bits_per_dim_se"] = se / (dims * LN2)
    smaller = [k for k in ll.by_k if k < ll.iw_samples]
    if smaller:
        k_low = max(smaller)
        gap_mean, gap_se = mean_and_se(ll.log_px - ll.by_k[k_low])
        section["k_gap"] = {"k_low": k_low, "k_high": ll.iw_samples, "gap": gap_mean, "gap_se": gap_se}
    return section


def reconstruction_section(model: VAE, inputs: ImageDataset) -> dict[str, Any]:
    """MSE, PSNR, SSIM and the sharpness ratios of the reconstructions of the very images the other
    sections measured."""
    return {"target": "the model's inputs (binarised as above)", **reconstruction_metrics(model, inputs)}


def draw_samples(model: VAE, opts: EvaluationOptions) -> torch.Tensor:
    """The ``opts.n_samples`` prior samples every sample metric of a report reads (decoder means of
    z ~ p(z) at ``opts.temperature`` and ``opts.guidance``; a conditional model's balanced over its
    classes), seeded from ``opts.seed``, so all of them see the same images."""
    from vaelab.generation import sample

    seed, n = derive_seed(opts.seed, "samples"), opts.n_samples
    return sample(model, n, temperature=opts.temperature, seed=seed, guidance=opts.guidance)


def sample_quality_section(
    model: VAE,
    reference: ImageDataset,
    feature_source: tuple[ImageDataset, ImageDataset] | None,
    opts: EvaluationOptions,
    samples: torch.Tensor | None = None,
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """FD / precision / recall / density / coverage of model samples against ``reference`` in a feature
    space trained on ``feature_source`` (train, test), plus the samples used (None when unavailable).
    ``samples`` are those of ``draw_samples``, drawn here when not given. Beside them (``coverage.py``):
    the same figures for N(0, I) samples through the same VAE, the ceiling of held-out real images by
    split-half of ``reference`` at matched sizes, and per-class figures for a conditional model."""
    from vaelab.evaluation import coverage
    from vaelab.evaluation.features import load_feature_space
    from vaelab.generation.conditional import balanced_labels

    if feature_source is None:
        return {"available": False, "reason": "no training split to train the feature classifier on"}, None
    try:
        space = load_feature_space(*feature_source, progress=opts.progress)
    except DataError as exc:  # no labels, so no classifier
        return {"available": False, "reason": str(exc)}, None
    if samples is None:
        samples = draw_samples(model, opts)
    # The classes ``sample`` drew (all, balanced, its default for a conditional model), or None.
    labels = balanced_labels(opts.n_samples, list(range(model.num_classes))) if model.num_classes else None
    real, fake = space.embed(reference.images), space.embed(samples)
    metrics = compare_features(real, fake, k=opts.k_nearest, seed=opts.seed)
    settings = {"temperature": opts.temperature, "guidance": opts.guidance, "seed": opts.seed}
    references, per_class = coverage.references(
        model, space, (reference, real), (fake, labels), metrics, k=opts.k_nearest, **settings
    )
    section = {
        "available": True,
        "feature_space": space.describe(),
        "classifier_test_accuracy": space.test_accuracy,
        "classifier_test_images": space.test_images,
        "samples": opts.n_samples,
        "sample_kind": coverage.sample_kind(model, opts.temperature, opts.guidance),
        "temperature": opts.temperature,
        "guidance": opts.guidance,
        "sample_seed": derive_seed(opts.seed, "samples"),
        "reference": f"{reference.name} split images as stored (grey levels), {len(reference)} images",
        "fd_se_kind": "bootstrap over both feature sets (20 replicates)",
        "pr_se_kind": "binomial, k-NN radii held fixed",
        "dc_se_kind": "radii held fixed: density over samples, coverage binomial over reference images",
        **metrics,
        "references": references,
        "vs_references": coverage.ratios(metrics, references),
    }
    if labels is not None:
        section["class_accuracy"] = float((coverage.predicted_classes(space, fake) == labels).double().mean())
    if per_class is not None:
        section["per_class"] = per_class
    return section, samples


def sample_sharpness_section(
    reference: ImageDataset, samples: torch.Tensor, opts: EvaluationOptions
) -> dict[str, Any]:
    """Fine detail of the prior samples against ``reference`` (the split as stored): the HF power and
    Laplacian variance ratios of the two sets' means, and the near-binary fraction of each."""
    return {
        "available": True,
        "sample_kind": SAMPLE_KIND,
        "temperature": opts.temperature,
        "guidance": opts.guidance,
        "sample_seed": derive_seed(opts.seed, "samples"),
        "reference": f"{reference.name} split images as stored (grey levels), {len(reference)} images",
        "ratio_se_kind": "delta method over both sets (independent)",
        **sample_sharpness(samples, reference.images),
    }


def inception_section(
    reference: ImageDataset, samples: torch.Tensor | None, weights: str | None
) -> dict[str, Any]:
    """Inception-v3 FID of ``samples`` against ``reference`` (optional: needs torch-fidelity's weights)."""
    if samples is None or not len(samples):
        return {"available": False, "reason": "no samples"}
    return inception_fid(reference.images, samples, weights)


def disentanglement_section(model: VAE, dataset: ImageDataset) -> dict[str, Any]:
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
