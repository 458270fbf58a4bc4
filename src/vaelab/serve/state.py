"""The models a server holds, with what the page needs about each: config, curves, test set, KL, map.

Expensive views (the test set, the per-dimension KL, the PCA map) are computed on first use and kept,
under a per-model lock so that two first requests do not compute them twice. They encode through the
model's own ``encode``, with each test image's label when the model is conditional.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Distribution

from vaelab.data import DataConfig, ImageDataset, load_dataset, to_float
from vaelab.generation import PCAProjection, project_pca, sample
from vaelab.generation.conditional import balanced_labels
from vaelab.io.metrics import read_metrics
from vaelab.models.saving import BEST_MODEL_DIR, run_dir_of
from vaelab.models.vae import CONFIG_NAME, VAE, resolve_model_dir

# How many test images the KL ranking and the map use: enough for a stable picture, few enough to
# compute in well under a second for MNIST-size models on a CPU.
KL_IMAGES = 1000
MAP_POINTS = 2000
MAP_SEED = 0
ENCODE_BATCH = 1024


class Unavailable(LookupError):
    """Something a model does not have (e.g. its test set cannot be loaded); the app answers 404."""


@dataclass(frozen=True)
class LatentMap:
    """A 2-D PCA map of test-set encodings: points, their labels and test-set indices, the projection."""

    projection: PCAProjection
    indices: torch.Tensor  # (N,) test-set index of each point
    labels: torch.Tensor | None  # (N,) or None for unlabelled data


@dataclass
class ServedModel:
    """One loaded model and its run's files. ``id`` names it in URLs; ``name`` is shown on the page."""

    id: str
    name: str
    path: Path
    model: VAE
    meta: dict[str, Any]
    run_config: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    # Re-entrant: one view's computation may need another (the map needs the test set).
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- what the model supports (where conditional models and other priors plug in) -----------------
    @property
    def priors(self) -> list[str]:
        """Priors ``sample`` can draw from: the model's own, then each prior ``vaelab fit-prior`` saved
        beside the model (gmm, flow, diffusion, two_stage)."""
        from vaelab.generation.priors import saved_priors

        return [self.model.config.prior.name, *saved_priors(resolve_model_dir(self.path))]

    def fitted_prior(self, kind: str) -> Any:
        """The ``kind`` prior fitted after training and saved beside the model (loaded once)."""
        from vaelab.generation.priors import load_prior

        return self._cached(f"prior:{kind}", lambda: load_prior(self.path, kind, self.model.latent_dim))

    @property
    def num_classes(self) -> int | None:
        """How many classes a conditional model takes (its ``label`` lies in [0, num_classes)); None for
        an unconditional model."""
        return self.model.num_classes or None

    @property
    def classes(self) -> list[str] | None:
        """Class names a conditional model can be asked for; None for an unconditional model."""
        if self.num_classes is None:
            return None
        names = self.data_config_dict.get("class_names")
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    @property
    def data_config_dict(self) -> dict[str, Any]:
        """The data config the model was trained with, as saved beside it ({} if unknown)."""
        return dict(self.meta.get("data") or {})

    # --- lazily computed views -----------------------------------------------------------------------
    def _cached(self, key: str, compute: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = compute()
                except Exception as exc:  # remember failures too: a missing dataset stays missing
                    self._cache[key] = exc
            value = self._cache[key]
        if isinstance(value, Exception):
            raise Unavailable(str(value)) from value
        return value

    def test_set(self) -> ImageDataset:
        """The test split of the training dataset (Unavailable if it cannot be loaded here)."""

        def load() -> ImageDataset:
            if not self.data_config_dict:
                raise Unavailable(f"model {self.id!r} does not record the dataset it was trained on")
            cfg = DataConfig.model_validate({**self.data_config_dict, "download": False})
            data = load_dataset(cfg, "test", progress=False)
            if data.image_shape != self.model.image_shape or len(data) == 0:
                raise Unavailable(f"the test set of model {self.id!r} does not match its image shape")
            return data

        return self._cached("test_set", load)

    def test_images(self, indices: torch.Tensor) -> torch.Tensor:
        """Test-set images at ``indices`` as floats in [0, 1], presented as the model saw them in training.

        Static binarisation is applied (the model never saw grey pixels); dynamic binarisation is not
        (its expectation is the grey image, and a fresh random draw per request would make the page flicker).
        """
        data = self.test_set()
        mode = "static" if self.data_config_dict.get("binarize") == "static" else "none"
        return to_float(data.images[indices], mode)

    def test_labels(self, indices: torch.Tensor) -> torch.Tensor | None:
        """The labels of test images at ``indices`` when the model is conditional (it needs them to
        encode); None for an unconditional model. Unavailable if the test set has no labels."""
        if self.num_classes is None:
            return None
        labels = self.test_set().labels
        if labels is None:
            raise Unavailable(f"model {self.id!r} is conditional but its test set has no labels")
        return labels[indices]

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> list[Distribution]:
        """q(z|x) (q(z|x, y) for a conditional model) of images (N, C, H, W) in [0, 1], one posterior
        per batch of ENCODE_BATCH images: the model's own ``encode`` (the top latent's posterior for a
        hierarchical model)."""
        device = self.model.device
        with torch.inference_mode():
            return [
                self.model.encode(
                    images[i : i + ENCODE_BATCH].to(device),
                    None if labels is None else labels[i : i + ENCODE_BATCH].to(device),
                )
                for i in range(0, len(images), ENCODE_BATCH)
            ]

    def dim_usage(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """How much each latent dimension is used, over test images (or model samples if none are
        here): its mean KL in nats, None where the KL does not split by dimension (a learned prior
        such as the VampPrior), and its activity, the variance of the posterior mean across images
        (Burda et al. 2016's active-unit statistic), which every model has."""

        def compute() -> tuple[torch.Tensor | None, torch.Tensor]:
            try:
                indices = torch.arange(min(KL_IMAGES, len(self.test_set())))
                images, labels = self.test_images(indices), self.test_labels(indices)
            except Unavailable:  # a conditional model's samples come from all its classes, balanced
                classes = list(range(self.num_classes or 0))
                labels = balanced_labels(256, classes) if classes else None
                images = sample(self.model, 256, seed=MAP_SEED, labels=labels)
            with torch.inference_mode():  # a learned prior's parameters need no graph here
                posteriors = self.encode(images, labels)
                per_image = [self.model.kl_per_dim(q) for q in posteriors]
                activity = torch.cat([q.mean for q in posteriors]).var(0).cpu()
            kl = None if any(k is None for k in per_image) else torch.cat(per_image).mean(0).cpu()
            return kl, activity

        return self._cached("dim_usage", compute)

    def dims_by_use(self) -> list[int]:
        """Latent dimensions, the most used first: by KL where it splits by dimension, else by
        activity."""
        kl, activity = self.dim_usage()
        return torch.argsort(activity if kl is None else kl, descending=True).tolist()

    def latent_map(self) -> LatentMap:
        """PCA of the posterior means of up to MAP_POINTS test images (a fixed, seeded choice)."""

        def compute() -> LatentMap:
            data = self.test_set()
            generator = torch.Generator().manual_seed(MAP_SEED)
            indices = torch.randperm(len(data), generator=generator)[:MAP_POINTS]
            posteriors = self.encode(self.test_images(indices), self.test_labels(indices))
            z = torch.cat([q.mean for q in posteriors]).cpu()
            labels = None if data.labels is None else data.labels[indices]
            return LatentMap(project_pca(z, 2), indices, labels)

        return self._cached("latent_map", compute)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.") or "model"


def _display_name(model_dir: Path) -> str:
    """A model's name on the page: its run directory's name (not 'model'; RUN-best for the run's
    model-best), else its own directory's."""
    run_dir = run_dir_of(model_dir)
    if run_dir is None:
        return model_dir.resolve().name
    return run_dir.resolve().name + ("-best" if model_dir.name == BEST_MODEL_DIR else "")


def load_served_model(path: str | Path, model_id: str, device: str | torch.device = "cpu") -> ServedModel:
    """Load a saved model (or a run directory's) with its run config and metrics, if it has them."""
    from vaelab.config import read_yaml

    path = Path(path)
    model_dir = resolve_model_dir(path)
    model = VAE.from_pretrained(model_dir, device=device)
    meta = json.loads((model_dir / CONFIG_NAME).read_text())
    run_dir = run_dir_of(model_dir) or model_dir
    run_config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    return ServedModel(
        id=model_id,
        name=_display_name(model_dir),
        path=path,
        model=model,
        meta=meta,
        run_config=run_config,
        metrics=read_metrics(run_dir),
    )


def load_served_models(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> list[ServedModel]:
    """Load every model given, with unique URL ids (``run``, ``run-2``, ... when names repeat)."""
    if not paths:
        raise ValueError("give at least one model (a run directory or a saved-model directory)")
    served: list[ServedModel] = []
    taken: set[str] = set()
    for path in paths:
        model_dir = resolve_model_dir(path)
        base = _slug(_display_name(model_dir))
        model_id, k = base, 2
        while model_id in taken:
            model_id, k = f"{base}-{k}", k + 1
        taken.add(model_id)
        served.append(load_served_model(path, model_id, device))
    return served
