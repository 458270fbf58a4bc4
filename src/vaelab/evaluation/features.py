"""The feature space of vaelab's sample-quality metrics: a small classifier trained once per dataset.

On MNIST-like data, Inception-v3 features (ImageNet photos) say little about digits, so the usual
practice is a classifier trained on the dataset itself; its penultimate layer is the feature space
in which Frechet distance, precision and recall are measured. vaelab trains it once (seeded, a
minute or less on a CPU for MNIST), reports its test accuracy, and caches it under
``cache_dir()/feature-nets/`` keyed by a fingerprint of the training images and labels.

The cache is read as JSON plus safetensors only: a file planted there can give wrong weights, never
run code. A cache entry that does not validate is retrained and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from vaelab.data import DataError, ImageDataset, batches, cache_dir, to_float
from vaelab.io.atomic import atomic_write, atomic_write_text
from vaelab.models.parts.layers import halved_sides

FORMAT = "vaelab-featurenet"
FORMAT_VERSION = 1


class FeatureNetConfig(BaseModel):
    """Architecture and training recipe of the feature classifier (part of the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_shape: tuple[int, int, int]
    num_classes: int = Field(ge=2)
    channels: tuple[int, ...] = (32, 64)
    feature_dim: int = Field(default=128, ge=2)
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    seed: int = 0


class FeatureNet(nn.Module):
    """Two stride-2 3x3 convolutions, a ``feature_dim`` ReLU layer (the features), a linear classifier."""

    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        layers: list[nn.Module] = []
        width = c
        for ch in config.channels:
            layers += [nn.Conv2d(width, ch, 3, stride=2, padding=1), nn.ReLU()]
            width = ch
        n = len(config.channels)
        flat = width * halved_sides(h, n)[-1] * halved_sides(w, n)[-1]
        self.body = nn.Sequential(*layers, nn.Flatten(1), nn.Linear(flat, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) penultimate activations for images in [0, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.body(x))


@dataclass
class FeatureSpace:
    """A trained feature net plus the facts a report states about it."""

    net: FeatureNet
    dataset: str
    fingerprint: str
    test_accuracy: float | None
    test_images: int
    path: Path | None

    def describe(self) -> str:
        """One line for reports: which feature space the numbers live in."""
        acc = f"{100 * self.test_accuracy:.2f}%" if self.test_accuracy is not None else "n/a"
        cfg = self.net.config
        return (
            f"vaelab feature net ({cfg.feature_dim}-d penultimate layer of a small CNN trained on the "
            f"{self.dataset} training split; test accuracy {acc} on {self.test_images} images)"
        )

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """(N, feature_dim) float64 features of (N, C, H, W) images: uint8, or floats in [0, 1]."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device)
            x = to_float(x, "none") if x.dtype == torch.uint8 else x.float()
            out.append(self.net.features(x).double().cpu())
        return torch.cat(out) if out else torch.empty(0, self.net.config.feature_dim, dtype=torch.float64)


def fingerprint(dataset: ImageDataset, config: FeatureNetConfig) -> str:
    """sha256 of the training images, labels and the net's recipe: a new dataset means a new net."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(dataset.images.contiguous().numpy().tobytes())
    assert dataset.labels is not None
    digest.update(dataset.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.inference_mode()
def accuracy(net: FeatureNet, dataset: ImageDataset, batch_size: int = 1000) -> float:
    """Fraction of ``dataset`` the classifier labels correctly."""
    assert dataset.labels is not None
    net.eval()
    correct = 0
    device = next(net.parameters()).device
    for images, labels in batches(dataset, batch_size, shuffle=False):
        assert labels is not None
        pred = net(to_float(images.to(device), "none")).argmax(1).cpu()
        correct += int((pred == labels).sum())
    return correct / max(1, len(dataset))


def train_feature_net(
    config: FeatureNetConfig, train_set: ImageDataset, progress: bool = False
) -> FeatureNet:
    """Adam on cross-entropy for ``config.epochs`` epochs, seeded (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = FeatureNet(config)
        opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        gen = torch.Generator().manual_seed(config.seed)
        steps = config.epochs * -(-len(train_set) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
        net.train()
        with tqdm(total=steps, desc="feature net", disable=not progress, leave=False) as bar:
            for _ in range(config.epochs):
                for images, labels in batches(train_set, config.batch_size, shuffle=True, generator=gen):
                    loss = F.cross_entropy(net(to_float(images, "none")), labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update(1)
    return net.eval()


def _load_cached(directory: Path, key: str) -> tuple[FeatureNet, dict[str, Any]] | None:
    """The cached net in ``directory`` if it is complete, valid and for ``key``; else None."""
    try:
        meta = json.loads((directory / "config.json").read_text())
        if meta.get("format") != FORMAT or meta.get("fingerprint") != key:
            return None
        net = FeatureNet(FeatureNetConfig.model_validate(meta["config"]))
        net.load_state_dict(load_file(str(directory / "model.safetensors")))
    except (
        OSError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        ValidationError,
        SafetensorError,
        RuntimeError,
    ):
        return None
    return net.eval(), meta


def load_feature_space(
    train_set: ImageDataset,
    test_set: ImageDataset | None = None,
    *,
    config: FeatureNetConfig | None = None,
    cache: bool = True,
    progress: bool = False,
    seed: int = 0,
) -> FeatureSpace:
    """The feature net for ``train_set``: from the cache, else trained now (and cached).

    ``test_set`` gives the accuracy stated in reports (computed once, when the net is trained).
    ``seed`` seeds the default recipe (another seed trains another net: the perceptual loss's).
    Raises ``DataError`` when the training set has no labels: without classes there is no classifier.
    """
    if train_set.labels is None or not train_set.num_classes or train_set.num_classes < 2:
        raise DataError(
            f"dataset {train_set.name!r} has no class labels, so vaelab cannot train the feature "
            "classifier for sample-quality metrics"
        )
    if config is None:
        # About 150k image presentations whatever the dataset's size: 3 epochs of MNIST, more of small sets.
        epochs = min(30, max(3, math.ceil(150_000 / max(1, len(train_set)))))
        config = FeatureNetConfig(
            image_shape=train_set.image_shape, num_classes=train_set.num_classes, epochs=epochs, seed=seed
        )
    key = fingerprint(train_set, config)
    directory = cache_dir() / "feature-nets" / f"{train_set.name}-{key[:16]}"
    cached = _load_cached(directory, key) if cache else None
    if cached is not None:
        net, meta = cached
        return FeatureSpace(
            net, train_set.name, key, meta.get("test_accuracy"), int(meta.get("test_images", 0)), directory
        )
    if progress:
        print(f"training the {train_set.name} feature classifier (once; cached)", file=sys.stderr)
    net = train_feature_net(config, train_set, progress)
    has_test = test_set is not None and test_set.labels is not None and len(test_set) > 0
    acc = accuracy(net, test_set) if has_test else None
    n_test = len(test_set) if has_test and test_set is not None else 0
    if cache:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": key,
            "dataset": train_set.name,
            "train_images": len(train_set),
            "test_accuracy": acc,
            "test_images": n_test,
            "config": config.model_dump(mode="json"),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_write(directory / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT})
        atomic_write_text(directory / "config.json", json.dumps(meta, indent=2) + "\n")
    return FeatureSpace(net, train_set.name, key, acc, n_test, directory if cache else None)
