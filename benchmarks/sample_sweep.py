"""Sample quality of one trained model under several priors and sampling temperatures.

For each (prior, temperature) pair: ``--n`` samples (decoder mean images, seeded), compared with the
test split in the feature space of ``vaelab evaluate`` (Frechet distance with its bootstrap error,
precision and recall, k = 3). Priors: the model's own (``standard_normal``) and the ex-post GMM fitted
to the training set's posterior means of the top latent (``gmm``, Ghosh et al. 2020; fitted once, in
memory: nothing is written beside the model). Temperatures: one number for every stochastic layer, or
a comma list with one per layer, top first. Prints one JSON object (progress rows go to stderr).

    python benchmarks/sample_sweep.py --model runs/hour --temperatures 1 0.8 1,0.8,0.8,0.8 \
        --priors standard_normal gmm
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vaelab.cli.evaluate import FEATURE_TRAIN_LIMIT
from vaelab.data import DataConfig, load_dataset, to_float
from vaelab.evaluation.features import load_feature_space
from vaelab.evaluation.report import in_memory
from vaelab.evaluation.sample_quality import compare_features
from vaelab.generation import sample
from vaelab.models import VAE
from vaelab.models.vae import resolve_model_dir
from vaelab.perf import cpu_features
from vaelab.runtime import environment


def temperature(text: str) -> float | list[float]:
    """'0.8' -> 0.8; '1,0.8,0.6' -> [1.0, 0.8, 0.6]."""
    parts = [float(t) for t in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def run_sweep(
    model_path: str,
    priors: list[str],
    temperatures: list[str],
    *,
    components: int = 10,
    n: int = 10_000,
    seed: int = 0,
    via_disk: bool = False,
) -> dict[str, Any]:
    """One row of FD / precision / recall per (prior, temperature), as a JSON-ready report.

    ``via_disk``: the GMM is saved beside a scratch copy of the model and read back the way
    ``vaelab sample --prior gmm`` reads it, so the round trip is part of what is measured.
    """
    from vaelab.generation.gmm_prior import fit_gmm_prior, load_gmm_prior, save_gmm_prior

    model_dir = Path(resolve_model_dir(model_path))
    model = VAE.from_pretrained(model_dir).eval()
    saved = json.loads((model_dir / "config.json").read_text()).get("data") or {}
    data_cfg = DataConfig.model_validate(saved)
    train_set = in_memory(load_dataset(data_cfg, "train", progress=False), FEATURE_TRAIN_LIMIT)
    test_set = in_memory(load_dataset(data_cfg, "test", progress=False))
    space = load_feature_space(train_set, test_set)
    real = space.embed(test_set.images)
    prior_of: dict[str, Any] = {"standard_normal": None}
    fit_seconds = gmm_info = None
    if "gmm" in priors:
        t0 = time.perf_counter()
        prior = fit_gmm_prior(model, to_float(train_set.images), components=components, seed=seed)
        fit_seconds, gmm_info = time.perf_counter() - t0, prior.info
        if via_disk:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "model"
                shutil.copytree(model_dir, copy)
                save_gmm_prior(prior, copy)
                prior = load_gmm_prior(copy, model.latent_dim)
        prior_of["gmm"] = prior
    rows = []
    for name in priors:
        for text in temperatures:
            t0 = time.perf_counter()
            fake = sample(model, n, temperature=temperature(text), seed=seed, prior=prior_of[name])
            score = compare_features(real, space.embed(fake), seed=seed)
            rows.append({"prior": name, "temperature": text, **score, "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress; stdout: one JSON
    return {
        "benchmark": "sample_sweep",
        "model": str(model_path),
        "samples": n,
        "reference": f"{test_set.name} test split, {len(test_set)} images",
        "fit_images": len(train_set),
        "feature_space": space.describe(),
        "gmm_components": components,
        "gmm_covariance": "full",
        "gmm_fit_seconds": fit_seconds,
        "gmm_info": gmm_info,
        "rows": rows,
        "cpu_features": cpu_features(),
        "environment": environment(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a run directory or a saved-model directory")
    p.add_argument("--temperatures", nargs="+", default=["1"], help="numbers or comma lists (per layer)")
    p.add_argument("--priors", nargs="+", default=["standard_normal"], choices=["standard_normal", "gmm"])
    p.add_argument("--components", type=int, default=10, help="GMM components")
    p.add_argument("--n", type=int, default=10_000, help="samples per row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    report = run_sweep(
        args.model, args.priors, args.temperatures, components=args.components, n=args.n, seed=args.seed
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
