"""Out-of-distribution detection: every OOD score of ``vaelab score`` on every offline pair, for an MNIST
model and a photos32 model, with each score's speed (docs/ood.md)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import REPO, benchmark, train_cli, usable_cores
from benchmarks.photos32 import data_path
from vaelab.data import DataConfig, load_dataset
from vaelab.data.ood_sets import default_pairs, letter_fonts, make_ood_set
from vaelab.evaluation import in_memory, seeded_subset
from vaelab.evaluation.ood.background import BackgroundSpec, save_background
from vaelab.evaluation.ood.evaluate import ood_section
from vaelab.evaluation.ood.plot import plot_scores
from vaelab.evaluation.ood.scores import (
    DEFAULT_K,
    DEFAULT_SCORE,
    SCORES,
    Scorer,
    fit_background_and_states,
    presentation,
)
from vaelab.models import VAE
from vaelab.models.saving import MODEL_DIR

MAIN_PHOTOS32_RUN = REPO.parent / "main" / "runs" / "photos32-vector-25min"
TARGETS = {"mnist": 0.98, "photos32": 0.95}  # the AUROC the default score aims at on every pair
PHOTOS32_SCHEDULE = [
    f"--set=train.{k}" for k in ("lr_schedule=cosine", "lr_decay_steps=12000", "lr_min_ratio=0.1")
]


def _model_dir(run: Path, work: Path, name: str) -> Path:
    """A writable copy of ``run``'s saved model (the background and calibration go beside it)."""
    source = run / MODEL_DIR if (run / MODEL_DIR / "config.json").is_file() else run
    target = work / name / MODEL_DIR
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("ood-*"))
    return target


def _run(given: Path | None, work: Path, name: str, config: str, minutes: float, extra: list[str]) -> tuple:
    """``given``'s model, else a fresh ``config`` trained ``minutes`` (0: as the config says, its learning
    rate schedule intact), with its training figures."""
    if given is not None:
        return _model_dir(given, work, name), {"reused": str(given)}
    run = work / f"{name}-run"
    sets = ["--set=train.image_every=100000"]
    if minutes > 0:
        sets += [f"--set=train.max_minutes={minutes}", "--set=train.epochs=100000"]
    training = train_cli(run, "--config", config, *extra, *sets)
    return _model_dir(run, work, name), {"config": config, "minutes": minutes, **training}


def _evaluate(model_dir: Path, name: str, options: dict[str, Any], seed: int, plots: Path | None) -> dict:
    """Fit the background and the density of states, then every score's AUROC / AUPRC / FPR95 on every
    pair and its speed."""
    model = VAE.from_pretrained(model_dir)
    data_cfg = DataConfig.model_validate(json.loads((model_dir / "config.json").read_text())["data"])
    binarize = presentation(data_cfg)
    train = in_memory(load_dataset(data_cfg, "train", progress=False))
    spec = BackgroundSpec(kernel=options["background_kernel"], noise=options["background_noise"], seed=seed)
    background = fit_background_and_states(model, train, data_cfg, spec)
    save_background(background, model_dir)
    test = in_memory(load_dataset(data_cfg, "test", progress=False))
    shape = model.image_shape
    scorer = Scorer(model, binarize, DEFAULT_K, background, seed=seed, codec_mixture=options["codec_mixture"])
    # Scores this model cannot give (likelihood regret of a hierarchical VAE) are left out, with why.
    wanted, skipped = scorer.usable(options["scores"] or SCORES)
    fast = [n for n in wanted if n != "likelihood_regret"]
    slow = [n for n in wanted if n == "likelihood_regret"]
    count, regret_count = options["count"], options["regret_count"]
    out: dict[str, Any] = {
        "model": str(model_dir),
        "image_shape": shape,
        "background_fit_seconds": background.info["seconds"],
        "states_fit_seconds": background.info["states"]["seconds"],
        "states": background.info["states"],
        "skipped_scores": skipped,
    }
    for names, n in ((fast, count), (slow, regret_count)) if slow else ((fast, count),):
        reference = seeded_subset(test, min(n, len(test)), seed)
        others = {s: make_ood_set(s, shape, n, seed, data_cfg.data_dir) for s in default_pairs(shape)}
        section = ood_section(scorer, reference, others, names)
        if "pairs" in out:  # merge the regret's (smaller) run into the main one
            for pair, got in section["pairs"].items():
                out["pairs"][pair]["scores"] |= got["scores"] | {"likelihood_regret_n": got["n"]}
            out["scores"] |= section["scores"]
        else:
            out |= section
    target = TARGETS[name]
    default = {pair: got["scores"][DEFAULT_SCORE]["auroc"] for pair, got in out["pairs"].items()}
    raw = {pair: got["scores"]["nll"]["auroc"] for pair, got in out["pairs"].items()}
    out["summary"] = {
        "default_score": DEFAULT_SCORE,
        "default_auroc": default,
        "raw_nll_auroc": raw,
        "raw_nll_below_half": sorted(p for p, a in raw.items() if a < 0.5),
        "target": target,
        "default_meets_target": {p: a >= target for p, a in default.items()},
    }
    if plots is not None:
        _plots(scorer, seeded_subset(test, min(count, len(test)), seed), shape, data_cfg, name, seed, plots)
    return out


def _plots(scorer: Scorer, reference: Any, shape: tuple, data_cfg: Any, name: str, seed: int, folder: Path):
    """The raw likelihood and the default score of the reference against the set that fools the raw one."""
    pair = "constant" if name == "photos32" else "dsprites"
    other = make_ood_set(pair, shape, len(reference), seed, data_cfg.data_dir)
    for score in ("nll", DEFAULT_SCORE):
        ref = scorer.score(reference, [score])[score]
        got = scorer.score(other, [score])[score]
        plot_scores(
            folder / f"ood-{name}-{pair}-{score}.png",
            got,
            score,
            reference=ref,
            reference_label=f"{name} test",
            inputs_label=f"ood:{pair}",
        )


@benchmark
def ood(
    mnist_run: Path | None = None,
    mnist_config: str = str(REPO / "configs" / "mnist-score.yaml"),
    mnist_minutes: float = 0.0,
    photos32_run: Path | None = None,
    photos32_config: str = str(REPO / "configs" / "folder-rgb.yaml"),
    photos32_minutes: float = 25.0,
    data: Path | None = None,
    count: int = 1000,
    regret_count: int = 200,
    scores: tuple[str, ...] = (),
    background_kernel: int = 3,
    background_noise: float = 0.1,
    codec_mixture: bool = True,
    plots: Path | None = None,
    keep: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """OOD detection: an MNIST model (--mnist-run, else --mnist-config trained for its own 30 minutes,
    or --mnist-minutes) and a photos32 model (--photos32-run, else ../main/runs/photos32-vector-25min if
    present, else --photos32-config trained --photos32-minutes, its rate decayed as photos32-sharp.yaml's)
    each get the background model and the density of states (on the images training held out), then
    every score's AUROC / AUPRC / FPR95 (the false-positive rate at a 95 percent
    true-positive rate) on every offline pair (--count images of the test split and of each set;
    likelihood regret on --regret-count), and each score's images per second on the reference (this
    process's cores).
    --plots DIR: histograms of the raw likelihood and the default score; --keep DIR keeps the models
    with their backgrounds. Ablations: --scores (default all),
    --background-kernel / --background-noise (the local background's window and training perturbation),
    --no-codec-mixture (the local background alone, without the lossless codec)."""
    options = {
        "count": count,
        "regret_count": regret_count,
        "scores": [*scores],
        "background_kernel": background_kernel,
        "background_noise": background_noise,
        "codec_mixture": codec_mixture,
    }
    if photos32_run is None and (MAIN_PHOTOS32_RUN / MODEL_DIR / "config.json").is_file():
        photos32_run = MAIN_PHOTOS32_RUN
    results: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "cores_usable": usable_cores(),
        "fonts": letter_fonts() or ["Pillow's default"],
    }
    with tempfile.TemporaryDirectory(prefix="ood-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # The learning rate decays as configs/photos32-sharp.yaml's does (cosine over 12,000 steps to 0.1x):
        # at a constant rate folder-rgb.yaml can diverge after ~30 epochs of photos32 (its comment says so),
        # and 25 minutes are ~75 epochs on one core of a CPU with AMX.
        photos = [] if photos32_run else ["--dataset", str(data_path(data)), *PHOTOS32_SCHEDULE]
        models = {
            "mnist": _run(mnist_run, work, "mnist", mnist_config, mnist_minutes, []),
            "photos32": _run(photos32_run, work, "photos32", photos32_config, photos32_minutes, photos),
        }
        for name, (model_dir, training) in models.items():
            results[name] = {"training": training, **_evaluate(model_dir, name, options, seed, plots)}
    # Reported, not enforced: a miss is a finding to read in docs/ood.md, not a broken command.
    met = [ok for name in models for ok in results[name]["summary"]["default_meets_target"].values()]
    results["targets_met"] = all(met)
    return results
