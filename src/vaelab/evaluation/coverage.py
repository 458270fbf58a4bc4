"""Sample quality beside its references: the figures of a model's samples mean little on their own.

Every sample-quality row of a report (FD, precision, recall, density, coverage against the evaluated
split, in the feature net's space) stands beside the same figures for

* **held-out real images, the ceiling**: real images of the *other* split (the training split when the
  test split is evaluated), as many as there are samples, a seeded random choice; for a conditional
  model, class by class as many as the samples of each class. What real data scores against the same
  reference is as much as any generator can score at these set sizes (real MNIST reaches recall 0.88,
  not 1). The feature net learnt from the training split, so its features of training images are a
  little more typical than of unseen ones: the ceiling leans, if anything, high;
* **N(0, I) samples through the same VAE** (top latent from N(0, I) at temperature 1, lower layers
  from their priors, no guidance, the same labels): what naive sampling gives, the baseline a fitted
  prior, a temperature or guidance must beat. Where the model's own sampling is exactly that, the row
  is the model's (``same_as_model``), not a second draw.

For a conditional model, ``per_class_figures`` gives each class's sample accuracy (the feature net's
label is the class asked for) and precision / recall / coverage against that class's images alone.
"""

from __future__ import annotations

from typing import Any

import torch

from vaelab.data import ImageDataset
from vaelab.evaluation.features import FeatureSpace
from vaelab.evaluation.sample_quality import DEFAULT_K, DENSITY_COVERAGE_K, density_coverage, precision_recall
from vaelab.models.vae import VAE


def held_out_real(
    pool: ImageDataset, sample_labels: torch.Tensor | None, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Real images of ``pool`` to stand where ``n`` samples stand: a seeded random ``n`` of them, or,
    with ``sample_labels``, as many of each class as the samples hold (fewer where ``pool`` has fewer).
    Returns the uint8 images and their labels (None for an unconditional comparison)."""
    gen = torch.Generator().manual_seed(seed)
    if sample_labels is None or pool.labels is None:
        pick = torch.randperm(len(pool), generator=gen)[: min(n, len(pool))]
        return pool.images[pick], None
    picks = []
    for c, count in zip(*torch.unique(sample_labels, return_counts=True), strict=True):
        members = (pool.labels == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[: int(count)]])
    pick = torch.cat(picks)
    return pool.images[pick], pool.labels[pick]


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
    """Accuracy of one class's images and their precision / recall / coverage against the class's
    reference images (None where either set is too small for the k-NN radii)."""
    row: dict[str, Any] = {"images": len(features)}
    if len(features):
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
) -> dict[str, Any]:
    """Per class c: the accuracy of the samples of class c and their precision, recall and coverage
    against the reference images of class c; the same for the held-out real images of class c (the
    ceiling); and recall / ceiling recall. Each argument is (features, labels)."""
    rows, sample_pred, real_pred = [], predicted_classes(space, samples[0]), predicted_classes(space, real[0])
    for c in torch.unique(samples[1]).tolist():
        ref = reference[0][reference[1] == c]
        mine, theirs = samples[1] == c, real[1] == c
        row = {"class": c, **_class_row(ref, samples[0][mine], sample_pred[mine], c)}
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
