"""The density of states, taken apart: which statistics and how many mixture components the default OOD
score needs, measured on the ``ood`` benchmark's models and pairs (docs/ood.md)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import benchmark, round_robin, vaelab
from vaelab.data import DataConfig, load_dataset, to_float
from vaelab.data.ood_sets import default_pairs, make_ood_set
from vaelab.evaluation import in_memory, seeded_subset
from vaelab.evaluation.ood.background import BackgroundSpec, load_background, save_background
from vaelab.evaluation.ood.metrics import auroc
from vaelab.evaluation.ood.scores import Scorer, fit_background_and_states, presentation
from vaelab.evaluation.ood.states import COMPONENTS, fit_density, held_out
from vaelab.models import VAE
from vaelab.models.saving import MODEL_DIR

COMPONENT_COUNTS = (1, 4, COMPONENTS, 16)
MODEL, BACKGROUND, CODEC = 0, 1, 2  # columns of Scorer.statistics (STATE_NAMES)


def _statistics(scorer: Scorer, images: torch.Tensor, seed: int) -> np.ndarray:
    """The default statistics, then the VAE's log-likelihood's parts at one draw: log p(x|z) and the
    (sampled) KL of each latent layer."""
    rows = []
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, len(images), 500):
            x = to_float(images[start : start + 500], scorer.binarize)
            out = scorer.model(x, iw_samples=1)
            assert out.kl_layers is not None
            terms = torch.cat([out.log_px_z[:, None], out.kl_layers], 1).double().numpy()
            rows.append(np.c_[scorer.statistics(x), terms])
    return np.concatenate(rows)


VARIANTS: dict[str, list[int] | str] = {
    "the three log-likelihoods": [MODEL, BACKGROUND, CODEC],
    "the VAE's and the codec's (no background)": [MODEL, CODEC],
    "the VAE's and the background's (no codec)": [MODEL, BACKGROUND],
    "the background's and the codec's (no VAE)": [BACKGROUND, CODEC],
    "the likelihood ratio, log p_model - log p_background, alone": "ratio",
    "the VAE's log-likelihood split into log p(x|z) and each layer's KL, + background + codec": "terms",
}


def _columns(stats: np.ndarray, how: list[int] | str) -> np.ndarray:
    if isinstance(how, list):
        return stats[:, how]
    if how == "ratio":
        return (stats[:, MODEL] - stats[:, BACKGROUND])[:, None]
    return np.c_[stats[:, 3:], stats[:, BACKGROUND], stats[:, CODEC]]


def _model(run: Path, seed: int) -> dict[str, Any]:
    """The run's model, data and scorer, its background and density of states fitted and saved beside
    the model first where they are missing (as `vaelab score` does)."""
    model_dir = run / MODEL_DIR if (run / MODEL_DIR / "config.json").is_file() else run
    model = VAE.from_pretrained(model_dir).eval()
    cfg = DataConfig.model_validate(json.loads((model_dir / "config.json").read_text())["data"])
    train = in_memory(load_dataset(cfg, "train", progress=False))
    fit_on = held_out(train, cfg.val_fraction, cfg.split_seed, seed)
    background = load_background(model_dir)
    if background is None or background.states is None:
        background = fit_background_and_states(model, train, cfg, BackgroundSpec(seed=seed), background)
        save_background(background, model_dir)
    scorer = Scorer(model, presentation(cfg), background=background, seed=seed)
    test = in_memory(load_dataset(cfg, "test", progress=False))
    return {"scorer": scorer, "cfg": cfg, "fit_on": fit_on, "test": test}


def _scores(columns: dict[str, np.ndarray], components: int, seed: int) -> dict[str, Any]:
    """The density fitted on the held-out rows, and minus its log-density of every set's rows."""
    fit = columns["held_out"]
    density = fit_density(fit, [f"s{i}" for i in range(fit.shape[1])], components=components, seed=seed)
    out: dict[str, Any] = {k: -density.log_prob(torch.from_numpy(v)).numpy() for k, v in columns.items()}
    return out | {"components": density.info["components"]}


@benchmark
def ood_states(
    mnist_run: Path,
    photos32_run: Path,
    count: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The default OOD score (the density of states) with other sets of statistics and, on its own
    statistics, with 1-16 mixture components: AUROC of --count test images against --count of each OOD
    set, for the trained MNIST and photos32 runs of the ``ood`` benchmark (their saved backgrounds and
    densities are used; fitted and saved beside the model first where absent)."""
    results: dict[str, Any] = {}
    for name, run in (("mnist", mnist_run), ("photos32", photos32_run)):
        m = _model(run, seed)
        scorer = m["scorer"]
        shape = scorer.model.image_shape
        stats = {
            "held_out": _statistics(scorer, m["fit_on"].images, seed),
            "test": _statistics(scorer, seeded_subset(m["test"], count, seed).images, seed),
        }
        for pair in default_pairs(shape):
            stats[pair] = _statistics(
                scorer, make_ood_set(pair, shape, count, seed, m["cfg"].data_dir).images, seed
            )
        rows: dict[str, Any] = {}
        default = scorer.background.states.columns  # the statistics `vaelab score` uses for this model
        plans = [(label, how, COMPONENTS) for label, how in VARIANTS.items()]
        plans += [(f"{k} components", default, k) for k in COMPONENT_COUNTS if k != COMPONENTS]
        for label, how, k in plans:
            scores = _scores({s: _columns(v, how) for s, v in stats.items()}, k, seed)
            aurocs = {pair: auroc(scores["test"], scores[pair]) for pair in default_pairs(shape)}
            rows[label] = {"components": scores["components"], "auroc": aurocs, "min": min(aurocs.values())}
        names = scorer.background.states.names
        results[name] = {"run": str(run), "held_out": len(m["fit_on"]), "default": names, "variants": rows}
    return results


@benchmark
def ood_speed(
    run: Path,
    scores: tuple[str, ...] = ("density_of_states", "likelihood_ratio", "nll"),
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Scoring speed on the model's whole test split (MNIST: 10,000 images): each of --scores alone, the
    scores taking turns over --repeats rounds after a warm-up (images/s, median), at this process's
    threads (--threads); then the whole `vaelab score RUN <dataset> --split test` command for the first
    score, start-up, data and CSV included. The background and its density are fitted and saved beside
    the model first where they are missing."""

    m = _model(run, seed)
    scorer, test, cfg = m["scorer"], m["test"], m["cfg"]
    fns = {name: (lambda name=name: scorer.score(test, [name])) for name in scores}
    timings = round_robin(fns, repeats)
    out: dict[str, Any] = {
        name: {"images_per_s": [len(test) / t for t in timing.wall], "median": len(test) / timing.median}
        for name, timing in timings.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        vaelab(
            "score",
            run,
            cfg.path or cfg.name,
            "--split",
            "test",
            "--score",
            scores[0],
            "--out",
            Path(tmp) / "s.csv",
            "--no-plot",
            "--no-progress",
        )
        wall = time.perf_counter() - start
        scored = len((Path(tmp) / "s.csv").read_text().splitlines()) - 1  # the header
    out["command"] = {"score": scores[0], "images": scored, "wall_s": wall, "images_per_s": scored / wall}
    return {"images": len(test), "scores": out}
