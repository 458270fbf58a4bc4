"""Latent priors fitted after training, side by side: FD, precision and recall of samples from each
fitted prior against the test split, beside N(0, I) sampling from the same VAE and held-out real images
(the ceiling: split-half of the test split, as in `vaelab evaluate`), with the cost of fitting (against
the VAE's training time) and of sampling."""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.harness import benchmark
from benchmarks.quality import feature_space
from vaelab.config import parse_override
from vaelab.data import DataConfig, to_float
from vaelab.evaluation import compare_features
from vaelab.evaluation.coverage import against_half
from vaelab.evaluation.sharpness import near_binary_fraction
from vaelab.generation import sample
from vaelab.generation.priors import encode_codes, fit_codes, prior_config
from vaelab.io.metrics import read_metrics
from vaelab.models import VAE, resolve_model_dir
from vaelab.models.saving import run_dir_of

Kind = Literal["gmm", "flow", "diffusion", "two_stage"]


def train_seconds(run: Path) -> float | None:
    """The VAE's training seconds, from its run's metrics (None for a bare model directory)."""
    try:
        rows = [row for row in read_metrics(run) if "train_minutes" in row]
    except OSError:
        return None
    return 60 * rows[-1]["train_minutes"] if rows else None


def options_by_kind(overrides: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set flow.epochs=20`` -> {"flow": {"epochs": 20}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in overrides:
        path, value = parse_override(item)
        if len(path) != 2:
            raise SystemExit(f"--set {item}: expected KIND.OPTION=VALUE, e.g. flow.epochs=20")
        out.setdefault(path[0], {})[path[1]] = value
    return out


@torch.no_grad()
def timed_sample(
    vae: VAE, n: int, temperature: str, seed: int, prior: Any = None
) -> tuple[torch.Tensor, ...]:
    """``n`` samples at ``temperature`` (one number, or one per layer, top first, comma-separated), with
    their wall and CPU seconds."""
    t = [float(part) for part in temperature.split(",")]
    start, cpu = time.perf_counter(), time.process_time()
    images = sample(vae, n, temperature=t[0] if len(t) == 1 else t, seed=seed, prior=prior)
    return images, time.perf_counter() - start, time.process_time() - cpu


@benchmark
def priors(
    model: str,
    kinds: tuple[Kind, ...] = ("gmm", "flow", "diffusion", "two_stage"),
    n: int = 10_000,
    temperatures: tuple[str, ...] = ("1",),
    fd_target: float = 3.0,
    grids: Path | None = None,
    overrides: tuple[str, ...] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Fit each prior of --kinds to a trained model's training codes (--set KIND.OPTION=VALUE changes
    one, e.g. diffusion.sample_steps=50) and score --n samples of each at each of --temperatures (a
    number, or one per layer, top first, comma-separated: 1,0.6,0.6,0.6) against the test split in the
    feature space of `vaelab evaluate` (and their fraction of near-binary pixels, the data's beside),
    beside N(0, I), the split-half ceiling (half B of the test split against half A, the samples
    likewise) and --n training images' posterior means decoded (what a prior giving back the training
    codes exactly would reach); --grids DIR writes 64 samples per prior.
    Targets: FD --fd-target times lower than N(0, I), recall 0.75 and precision 0.9 of the ceiling's,
    fitting in at most a fifth of the VAE's training time, sampling --n in under 60 s."""
    model_dir = resolve_model_dir(model)
    vae = VAE.from_pretrained(model_dir).eval()
    data = DataConfig.model_validate(json.loads((model_dir / "config.json").read_text()).get("data") or {})
    train_set, test_set, space = feature_space(data)
    real = space.embed(test_set.images)

    def scored(images: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        """Figures against the test split, and (with the ceiling's) against its half A."""
        features = space.embed(images)
        halves = against_half(space, (real, None), (features, None), seed=seed)
        crisp = {"near_binary_fraction": float(near_binary_fraction(images).mean())}
        return compare_features(real, features, seed=seed) | crisp | {"vs_half": halves["model"]}, halves

    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:n]
    vae_seconds = train_seconds(run_dir_of(model_dir) or model_dir)
    start, cpu = time.perf_counter(), time.process_time()
    codes = encode_codes(vae, to_float(train_set.images), train_set.labels, train_set.num_classes)
    encode_seconds, encode_cpu = time.perf_counter() - start, time.process_time() - cpu
    with torch.no_grad():  # what a prior that returned the training codes themselves would give
        means = torch.cat([vae.decode(codes.mean[pick[i : i + 1000]]) for i in range(0, len(pick), 1000)])
    decoded_means, halves = scored(means)
    ceiling = halves["held_out_real"] | {"what": f"half B of the test split against half A, seed {seed}"}
    options = options_by_kind(overrides)
    fitted: dict[str, Any] = {"standard_normal": None}
    for kind in kinds:
        fitted[kind] = fit_codes(kind, codes, prior_config(kind, options.get(kind)), seed=seed, progress=True)
    rows, base_fd, strips = [], {}, []
    for (name, prior), temperature in itertools.product(fitted.items(), temperatures):
        images, seconds, sample_cpu = timed_sample(vae, n, temperature, seed, prior)
        score, _ = scored(images)
        base_fd.setdefault(temperature, score["fd"])  # N(0, I) at the same temperature
        row: dict[str, Any] = {"prior": name, "temperature": temperature, **score}
        row |= {"sample_seconds": seconds, "sample_cpu_seconds": sample_cpu}
        row |= {"fd_ratio": base_fd[temperature] / score["fd"]}
        for key in ("precision", "recall", "coverage"):
            row[f"{key}_of_ceiling"] = score["vs_half"][key] / ceiling[key]
        if prior is not None:
            fit = prior.info["fit_seconds"] + encode_seconds
            row |= {"fit_seconds": fit, "fit_cpu_seconds": prior.info["fit_cpu_seconds"] + encode_cpu}
            row |= {"config": prior.config.model_dump(), "info": prior.info}
            row["fit_fraction"] = fit / vae_seconds if vae_seconds else None
            row["targets_met"] = {
                "fd": row["fd_ratio"] >= fd_target,
                "recall": row["recall_of_ceiling"] >= 0.75,
                "precision": row["precision_of_ceiling"] >= 0.9,
                "fit_cost": row["fit_fraction"] is not None and row["fit_fraction"] <= 0.2,
                "sample_cost": seconds < 60,
            }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("config", "info")}), file=sys.stderr)
        if temperature != temperatures[0]:
            continue  # grids: at the first temperature
        strips.append(images[:16])
        if grids:
            from vaelab.io.images import save_grid

            grids.mkdir(parents=True, exist_ok=True)
            save_grid(images[:64], grids / f"{train_set.name}-{name}.png", nrow=8)
            if len(strips) == len(fitted):  # one image: two rows of 8 per prior, in the table's order
                save_grid(torch.cat(strips), grids / f"{train_set.name}-priors.png", nrow=8)
    return {
        "model": str(model_dir),
        "reference": f"{test_set.name} test split, {len(test_set)} images",
        "data_near_binary_fraction": float(near_binary_fraction(test_set.images).mean()),
        "feature_space": space.describe(),
        "vae_train_seconds": vae_seconds,
        "encode_seconds": encode_seconds,
        "encode_cpu_seconds": encode_cpu,
        "training_codes": len(codes.mean),
        "ceiling": ceiling,
        "decoded_codes": {"what": "the same images' posterior means, decoded", **decoded_means},
        "rows": rows,
    }
