"""Sample quality beside its references: the figures of a model's samples mean little on their own.

Every sample-quality report (FD, precision, recall, density, coverage against the evaluated split, in
the feature net's space) stands beside the same figures for

* **N(0, I) samples through the same VAE** (top latent from N(0, I) at temperature 1, lower layers
  from their priors, no guidance, the same labels), against the same split at the same sizes: what naive
  sampling gives, the baseline a fitted prior, a temperature or guidance must beat. Where the model's
  own sampling is exactly that, the row is the model's (``same_as_model``), not a second draw;
* **held-out real images, the ceiling**, by split-half: the evaluated split is cut in two at random
  (seeded), half B stands where samples stand and half A is the reference; the model's samples are
  scored against the same half A at the same size (as many as B holds; for a conditional model, class
  by class as many as B holds of each class). Half B is real data of the very distribution of the
  reference that neither the VAE nor the feature net has seen, so its figures are what a perfect
  generator would score at these sizes (real MNIST reaches recall 0.89, not 1), and the model's
  figures over them (``vs_references``) are a fair fraction. (Images of the *other* split would not do:
  photos32's splits hold different photographs, and the feature net, trained on the training split,
  embeds its own training images unlike any unseen image.)

For a conditional model, ``per_class`` gives each class's sample accuracy (the feature net's label is
the class asked for) and precision / recall / coverage against that class's half-A images, beside the
same for its half-B images.
"""

from __future__ import annotations

from typing import Any

import torch

from vaelab.data import ImageDataset
from vaelab.evaluation.features import FeatureSpace
from vaelab.evaluation.sample_quality import (
    DEFAULT_K,
    DENSITY_COVERAGE_K,
    compare_features,
    density_coverage,
    precision_recall,
)
from vaelab.models.vae import VAE
from vaelab.runtime import derive_seed


def split_half(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded random half A of ``n`` images (the reference; the larger half when ``n`` is
    odd) and of the rest, B (the held-out real images), each in split order."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n // 2 :].sort().values, order[: n // 2].sort().values


def matched(
    sample_labels: torch.Tensor | None,
    half_labels: torch.Tensor | None,
    n_samples: int,
    n_half: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-sized picks of the samples and of half B: the first ``min(n_samples, n_half)`` samples and
    as many of B at random (seeded); with labels, class by class as many as the smaller set holds."""
    gen = torch.Generator().manual_seed(seed)
    if sample_labels is None or half_labels is None:
        m = min(n_samples, n_half)
        return torch.arange(m), torch.randperm(n_half, generator=gen)[:m].sort().values
    picks: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for c in torch.unique(sample_labels).tolist():
        mine, theirs = (sample_labels == c).nonzero().flatten(), (half_labels == c).nonzero().flatten()
        m = min(len(mine), len(theirs))
        picks[0].append(mine[:m])
        picks[1].append(theirs[torch.randperm(len(theirs), generator=gen)[:m]].sort().values)
    return torch.cat(picks[0]), torch.cat(picks[1])


def sample_kind(model: VAE, temperature: float, guidance: float) -> str:
    """What a report's samples are, in words."""
    kind = f"decoder means of z ~ p(z) = {model.config.prior.name}, temperature {temperature:g}"
    if model.num_classes:
        kind += f", guidance {guidance:g}, all classes balanced"
    if model.config.likelihood.name == "bernoulli":
        kind += " (pixel probabilities for a Bernoulli likelihood)"
    return kind


def samples_are_standard_normal(model: VAE, temperature: float, guidance: float) -> bool:
    """Whether the model's own sampling is plain N(0, I) sampling at temperature 1 without guidance."""
    return model.config.prior.name == "standard_normal" and temperature == 1.0 and guidance == 1.0


@torch.no_grad()
def standard_normal_samples(
    model: VAE, n: int, labels: torch.Tensor | None, seed: int, batch_size: int = 1024
) -> torch.Tensor:
    """``n`` decoder-mean images of z ~ N(0, I) through ``model`` whatever its prior (lower layers from
    their priors at temperature 1, no guidance), for the classes ``labels`` of a conditional model."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=gen).to(model.device)
    out = []
    for i in range(0, n, batch_size):
        y = None if labels is None else labels[i : i + batch_size].to(model.device)
        out.append(model.decode_sample(z[i : i + batch_size], y, generator=gen).cpu())
    return torch.cat(out)


def predicted_classes(space: FeatureSpace, features: torch.Tensor) -> torch.Tensor:
    """The feature net's class for each row of its own ``features`` (its head on the penultimate layer)."""
    head = space.net.head
    with torch.inference_mode():
        return head(features.to(head.weight.device, head.weight.dtype)).argmax(1).cpu()


def _class_row(
    reference: torch.Tensor, features: torch.Tensor, predicted: torch.Tensor, c: int
) -> dict[str, Any]:
    """Accuracy of ``predicted`` (one class's images) and the precision / recall / coverage of their
    ``features`` against the class's reference images (absent where a set is too small for k-NN radii)."""
    row: dict[str, Any] = {"images": len(features)}
    if len(predicted):
        row["accuracy"] = float((predicted == c).double().mean())
    if len(features) > DENSITY_COVERAGE_K and len(reference) > DENSITY_COVERAGE_K:
        pr = precision_recall(reference, features, DEFAULT_K)
        dc = density_coverage(reference, features, DENSITY_COVERAGE_K)
        row |= {key: pr[key] for key in ("precision", "precision_se", "recall", "recall_se")}
        row |= {key: dc[key] for key in ("coverage", "coverage_se")}
    return row


def per_class_figures(
    space: FeatureSpace,
    reference: tuple[torch.Tensor, torch.Tensor],
    samples: tuple[torch.Tensor, torch.Tensor],
    real: tuple[torch.Tensor, torch.Tensor],
    every_sample: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Per class c: precision, recall and coverage of the ``samples`` of class c against the
    ``reference`` images of class c, the same for the ``real`` held-out images of class c (the ceiling;
    as many as the samples, see ``matched``), and recall / ceiling recall; the accuracy of the samples
    of class c (of ``every_sample`` when given, else of ``samples``) and of the real images. Each
    argument is (features, labels)."""
    every_sample = every_sample or samples
    every_pred, real_pred = predicted_classes(space, every_sample[0]), predicted_classes(space, real[0])
    rows = []
    for c in torch.unique(every_sample[1]).tolist():
        ref, mine, theirs = reference[0][reference[1] == c], samples[1] == c, real[1] == c
        row = {"class": c, **_class_row(ref, samples[0][mine], every_pred[every_sample[1] == c], c)}
        row["images"], row["accuracy_images"] = int(mine.sum()), int((every_sample[1] == c).sum())
        row["ceiling"] = _class_row(ref, real[0][theirs], real_pred[theirs], c)
        row["reference_images"] = len(ref)
        if row.get("recall") is not None and row["ceiling"].get("recall"):
            row["recall_over_ceiling"] = row["recall"] / row["ceiling"]["recall"]
        rows.append(row)
    accuracies = [r["accuracy"] for r in rows if "accuracy" in r]
    ratios = [r["recall_over_ceiling"] for r in rows if "recall_over_ceiling" in r]
    return {
        "rows": rows,
        "k": DEFAULT_K,
        "k_coverage": DENSITY_COVERAGE_K,
        "worst_accuracy": min(accuracies) if accuracies else None,
        "worst_recall_over_ceiling": min(ratios) if ratios else None,
    }


def against_half(
    space: FeatureSpace,
    real: tuple[torch.Tensor, torch.Tensor | None],
    samples: tuple[torch.Tensor, torch.Tensor | None],
    *,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> dict[str, Any]:
    """The ceiling by split-half: ``real`` (features and labels of the evaluated split) cut in halves A
    and B; FD / precision / recall / density / coverage of half B and of as many ``samples`` (features
    and labels; class-matched when both have labels) against half A, and per-class figures when both
    have labels. Returns {"held_out_real", "model", "per_class" (or None), "reference_images"}."""
    a, b = split_half(len(real[0]), seed)
    half_labels = None if real[1] is None else real[1][b]
    mine, theirs = matched(samples[1], half_labels, len(samples[0]), len(b), seed)
    reference, ceiling, fake = real[0][a], real[0][b][theirs], samples[0][mine]
    out: dict[str, Any] = {
        "held_out_real": compare_features(reference, ceiling, k=k, seed=seed),
        "model": compare_features(reference, fake, k=k, seed=seed),
        "reference_images": len(a),
        "per_class": None,
    }
    if samples[1] is not None and half_labels is not None:
        assert real[1] is not None
        out["per_class"] = per_class_figures(
            space,
            (reference, real[1][a]),
            (fake, samples[1][mine]),
            (ceiling, half_labels[theirs]),
            every_sample=(samples[0], samples[1]),
        )
    return out


def references(
    model: VAE,
    space: FeatureSpace,
    reference: tuple[ImageDataset, torch.Tensor],
    samples: tuple[torch.Tensor, torch.Tensor | None],
    metrics: dict[str, Any],
    *,
    temperature: float,
    guidance: float,
    k: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The references of a report's sample figures ``metrics``: ``reference`` is the evaluated split
    and its features, ``samples`` the model samples' features and labels (drawn at ``temperature`` and
    ``guidance``). Returns ({"standard_normal", "held_out_real", "model_vs_half"}, per-class figures or
    None); the seeds derive from ``seed``."""
    split, real = reference
    fake, labels = samples
    if samples_are_standard_normal(model, temperature, guidance):
        normal = {**metrics, "same_as_model": True}
    else:
        normal_seed = derive_seed(seed, "standard_normal_samples")
        normal_features = space.embed(standard_normal_samples(model, len(fake), labels, normal_seed))
        normal = compare_features(real, normal_features, k=k, seed=seed)
        normal |= {"same_as_model": False, "sample_seed": normal_seed}
    normal["kind"] = "decoder means of z ~ N(0, I), temperature 1, no guidance"
    if labels is not None:
        normal["kind"] += ", the same labels"
    out: dict[str, Any] = {"standard_normal": normal}
    if len(real) < 2 * (DENSITY_COVERAGE_K + 1):  # both halves need more than k points
        return out, None
    half_seed = derive_seed(seed, "held_out_half")
    split_labels = split.labels if labels is not None else None
    halves = against_half(space, (real, split_labels), (fake, labels), k=k, seed=half_seed)
    size = halves["held_out_real"]["fake_images"]
    against = f"against the other half, {halves['reference_images']} images (seed {half_seed})"
    matched_by = ", class by class as many as half B holds" if halves["per_class"] else ""
    kind = f"{size} images of a random half B of the evaluated {split.name} split{matched_by}, {against}"
    out["held_out_real"] = halves["held_out_real"] | {"kind": kind}
    out["model_vs_half"] = halves["model"] | {"kind": f"{size} of the model samples, {against}"}
    return out, halves["per_class"]


def ratios(model: dict[str, Any], references: dict[str, Any]) -> dict[str, float]:
    """The model's figures over the ceiling's at matched sizes (1: as good as real data), and N(0, I)'s
    FD over the model's (above 1: the model's sampling beats naive N(0, I) sampling)."""
    out: dict[str, float] = {}
    ceiling, matched = references.get("held_out_real"), references.get("model_vs_half")
    if ceiling and matched:
        for key in ("precision", "recall", "density", "coverage"):
            if ceiling[key]:
                out[f"{key}_over_ceiling"] = matched[key] / ceiling[key]
    if model["fd"] > 0 and not references["standard_normal"]["same_as_model"]:
        out["fd_standard_normal_over_model"] = references["standard_normal"]["fd"] / model["fd"]
    return out
