"""Test-set negative log-likelihood against training minutes, from a run's model snapshots.

Train with snapshots (``train.snapshot_every``: each is the saved model, EMA weights included, with its
cumulative training minutes), then evaluate every snapshot on the test split with the same protocol as
``vaelab evaluate`` (the split binarised once with a recorded seed, a seeded subset, K importance
samples). Prints one JSON object (a row per snapshot) and, with ``--plot``, draws NLL against minutes
with one line per run and the published reference lines.

    vaelab train --config configs/mnist-hour.yaml --set train.snapshot_every=2 --run-dir runs/hour
    python benchmarks/nll_vs_minutes.py runs/hour --iw-samples 100 --subset 1000 --plot curve.png > hour.json
    python benchmarks/nll_vs_minutes.py runs/long --reuse hour.json --plot both.png   # one plot, both runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from vaelab.perf import cpu_features
from vaelab.runtime import environment

REFERENCES = {"2-layer VAE (Burda et al. 2015)": 85.33, "IWAE k=50 (Burda et al. 2015)": 82.90}


def snapshots(run: Path) -> list[Path]:
    """The run's snapshot directories in training order (an error names a run without any)."""
    found = sorted((run / "snapshots").glob("epoch-*"))
    if not found:
        raise SystemExit(f"{run}: no snapshots; train with --set train.snapshot_every=N")
    return found


def evaluate_snapshot(snapshot: Path, args: argparse.Namespace, out: Path) -> dict:
    """One snapshot's test NLL (and ELBO) through ``vaelab evaluate``, with its training minutes.

    Each evaluation is its own process: its report table goes to stderr (stdout stays one JSON
    object), and a compiled estimator starts from a clean compile cache for every snapshot."""
    cli = [sys.executable, "-m", "vaelab", "evaluate", str(snapshot), "--split", "test"]
    cli += ["--iw-samples", str(args.iw_samples)]
    cli += ["--subset", str(args.subset), "--seed", str(args.seed), "--precision", args.precision]
    cli += ["--no-sample-quality", "--no-progress", "--out", str(out)]
    if args.compile:
        cli.append("--compile")
    if subprocess.run(cli, stdout=sys.stderr).returncode != 0:
        raise SystemExit(f"vaelab evaluate failed on {snapshot}")
    report = json.loads((out / "report.json").read_text())
    saved = json.loads((snapshot / "config.json").read_text())
    ll = report["log_likelihood"]
    return {
        "snapshot": str(snapshot),
        "epoch": saved["epoch"],
        "train_minutes": saved["train_minutes"],
        "iw_samples": ll["iw_samples"],
        "images": ll["images"],
        "nll": ll["nll"],
        "nll_se": ll["nll_se"],
        "bits_per_dim": ll.get("bits_per_dim"),  # likelihoods over 8-bit pixels only
        "neg_elbo": -report["elbo"]["elbo"],
        "k_gap": ll.get("k_gap"),
        "seconds": ll["seconds"],
    }


def plot(rows: list[dict], path: Path) -> None:
    """NLL against training minutes, one line per run, error bars of one standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        ax.errorbar(
            [r["train_minutes"] for r in mine],
            [r["nll"] for r in mine],
            yerr=[r["nll_se"] for r in mine],
            marker="o",
            capsize=3,
            label=Path(run).name,
        )
    lo, hi = min(r["nll"] for r in rows), max(r["nll"] for r in rows)
    for (name, value), style in zip(REFERENCES.items(), ("--", ":"), strict=True):
        if lo - 10 <= value <= hi + 10:  # binarised-MNIST references; off the scale of 8-bit nats
            ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=f"{name}: {value}")
    k, n = rows[0]["iw_samples"], rows[0]["images"]
    ax.set(xlabel="training minutes", ylabel=f"test -log p(x), nats (K={k}, {n} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories trained with train.snapshot_every")
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--subset", type=int, default=1000, help="seeded test images per snapshot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--plot", type=Path, help="write the NLL-vs-minutes plot here (PNG)")
    p.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        help="an earlier report of this script (JSON): its rows join the table and plot, not re-evaluated",
    )
    args = p.parse_args()
    rows = [{**row, "reused_from": str(f)} for f in args.reuse for row in json.loads(f.read_text())["rows"]]
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for i, snap in enumerate(snapshots(run)):
                row = evaluate_snapshot(snap, args, Path(tmp) / f"{run.name}-{i}")
                rows.append({"run": str(run), **row})
    if args.plot:
        plot(rows, args.plot)
    report = {"benchmark": "nll_vs_minutes", "rows": rows, "cpu_features": cpu_features()}
    print(json.dumps({**report, "environment": environment()}, indent=2))


if __name__ == "__main__":
    main()
