"""How good the models are: test NLL against training minutes, sample quality and its reference points,
and the control targets (conditional samples, beta-TCVAE's MIG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from benchmarks.harness import benchmark, evaluate, train_in_process
from vaelab.cli.evaluate import FEATURE_TRAIN_LIMIT
from vaelab.config import load_config
from vaelab.data import DataConfig, load_dataset, to_float
from vaelab.evaluation import compare_features, in_memory
from vaelab.evaluation.disentanglement import mutual_information_gap
from vaelab.evaluation.features import FeatureNetConfig, FeatureSpace, load_feature_space
from vaelab.generation import encode_mean

# Published test NLLs on MNIST with dynamic binarisation, K = 5000 (Burda et al. 2015, table 1).
BURDA_2015 = {
    "VAE, 2 stochastic layers (Burda et al. 2015)": 85.33,
    "IWAE, 2 stochastic layers, k=50 (Burda et al. 2015)": 82.90,
}


def feature_space(data: DataConfig, epochs: int | None = None) -> tuple[Any, Any, FeatureSpace]:
    """The train and test splits in memory and the feature space of ``vaelab evaluate`` for them: the
    classifier it trains (for ``epochs``, else its default) once per dataset and caches."""
    train, test = (in_memory(load_dataset(data, split, progress=False)) for split in ("train", "test"))
    shape = {"image_shape": train.image_shape, "num_classes": train.num_classes}
    net = FeatureNetConfig(**shape, epochs=epochs) if epochs else None
    space = load_feature_space(in_memory(train, FEATURE_TRAIN_LIMIT), test, config=net)
    return train, test, space


@benchmark
def feature_references(dataset: str = "mnist", n: int = 10_000, seed: int = 0) -> dict:
    """Reference points for sample quality in the feature space of `vaelab evaluate`, against the test
    split: --n real training images (the floor) and the test images blurred (Gaussian, sigma 1 px)."""
    train_set, test_set, space = feature_space(DataConfig(name=dataset))
    real = space.embed(test_set.images)
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:n]
    g, c = torch.exp(-(torch.arange(-3, 4.0) ** 2) / 2), test_set.images.shape[1]  # sigma 1 px, cut at 3
    kernel = (g[:, None] * g / g.sum() ** 2).expand(c, 1, 7, 7)  # zero padding
    blurred = F.conv2d(test_set.images.float(), kernel, padding=3, groups=c).round().clamp(0, 255)
    fakes = {"training_images": train_set.images[pick], "blurred_test_images": blurred}
    scores = {name: compare_features(real, space.embed(x.byte()), seed=seed) for name, x in fakes.items()}
    return {"feature_space": space.describe(), **scores}


@benchmark
def nll_vs_minutes(
    runs: tuple[Path, ...],
    iw_samples: int = 100,
    subset: int = 1000,
    precision: Literal["fp32", "bf16"] = "fp32",
    compile: bool = False,
    plot: Path | None = None,
    reuse: tuple[Path, ...] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Test NLL against training minutes: each snapshot of runs trained with train.snapshot_every through
    `vaelab evaluate` (--subset seeded test images, K = --iw-samples); --plot draws one line per run, the
    runs of --reuse reports included, beside the published reference lines."""
    rows = []
    for report in reuse:
        saved = json.loads(report.read_text())
        rows += [{**row, "reused_from": str(report)} for row in saved.get("results", saved)["rows"]]
    cli = [f"--iw-samples={iw_samples}", f"--subset={subset}", f"--seed={seed}", f"--precision={precision}"]
    cli += ["--no-sample-quality", *(["--compile"] if compile else [])]
    for run in runs:
        snapshots = sorted((run / "snapshots").glob("epoch-*"))
        if not snapshots:
            raise SystemExit(f"{run}: no snapshots; train with --set train.snapshot_every=N")
        rows += [snapshot_row(run, snapshot, cli) for snapshot in snapshots]
    if plot:
        plot_nll(rows, plot)
    return {"rows": rows}


def snapshot_row(run: Path, snapshot: Path, cli: list[str]) -> dict[str, Any]:
    """One snapshot of ``run`` through `vaelab evaluate` ``cli`` on the test split: its epoch, training
    minutes, -ELBO and importance-weighted -log p(x)."""
    keep = ("iw_samples", "images", "nll", "nll_se", "bits_per_dim", "k_gap", "seconds")
    report = evaluate(snapshot, *cli)
    saved = json.loads((snapshot / "config.json").read_text())
    row = {"run": str(run), "snapshot": str(snapshot), "epoch": saved["epoch"]}
    row |= {"train_minutes": saved["train_minutes"], "neg_elbo": -report["elbo"]["elbo"]}
    return row | {k: report["log_likelihood"].get(k) for k in keep}


def plot_nll(rows: list[dict[str, Any]], path: Path) -> None:
    """NLL against training minutes, one line per run, error bars of one standard error."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay untouched

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        minutes, nll, se = ([r[k] for r in mine] for k in ("train_minutes", "nll", "nll_se"))
        ax.errorbar(minutes, nll, yerr=se, marker="o", capsize=3, label=Path(run).name)
    low, high = min(r["nll"] for r in rows), max(r["nll"] for r in rows)
    for (name, value), style in zip(BURDA_2015.items(), ("--", ":"), strict=True):
        if low - 10 <= value <= high + 10:  # binarised-MNIST references: off the scale of 8-bit nats
            ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=f"{name}: {value}")
    k, n = rows[0]["iw_samples"], rows[0]["images"]
    ax.set(xlabel="training minutes", ylabel=f"test -log p(x), nats (K={k}, {n} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@benchmark
def control_mig(
    steps: int = 4000,
    batch_size: int = 256,
    objective: Literal["both", "vae", "beta_tcvae"] = "both",
    save: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Does beta-TCVAE (beta 6, mss) disentangle more than a plain VAE? The MIG of dsprites' test posterior
    means after training one MLP with each objective; --save keeps the runs."""
    base = ["data.name=dsprites", "model.latent_dim=10", "train.lr=1e-3", "train.image_every=1000"]
    base += ["model.encoder.hidden_dims=[512,256]", "model.decoder.hidden_dims=[256,512]"]
    base += [f"train.max_steps={steps}", "train.epochs=1000", f"train.batch_size={batch_size}"]
    base += [f"train.seed={seed}"]
    tcvae = ["objective.name=tcvae", "objective.beta=6", "objective.estimator=mss"]
    objectives = {"vae": ["objective.name=elbo"], "beta_tcvae": tcvae}
    test = load_dataset(DataConfig(name="dsprites"), "test", progress=False)
    grid = dict(zip(test.factor_names, test.factor_sizes, strict=True))
    out: dict[str, Any] = {"test_images": len(test), "factor_grid": grid}
    for name, extra in objectives.items() if objective == "both" else [(objective, objectives[objective])]:
        result, seconds = train_in_process(load_config(None, base + extra), save and save / name)
        z = encode_mean(result.model, to_float(test.images))
        score = mutual_information_gap(z, test.factors, test.factor_names)
        out[name] = {"objective": extra, "train_seconds": seconds, "val_elbo": result.history[-1]["val_elbo"]}
        out[name] |= {"mig": score["mig"], "mig_per_factor": score["per_factor"]}
    if objective == "both":
        out["target_met"] = out["beta_tcvae"]["mig"] > out["vae"]["mig"]
    return out
