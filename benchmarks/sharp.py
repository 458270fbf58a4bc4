"""Does the adversarial decoder buy sharpness? A config and its non-adversarial twin at equal wall clock,
side by side, scored by ``vaelab evaluate``."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, benchmark, evaluate, train_cli
from benchmarks.photos32 import data_path

KEEP = ("elbo", "log_likelihood", "reconstruction", "sample_quality", "sample_sharpness")
SUMMARY = {
    "hf_power_ratio": "reconstruction",
    "psnr": "reconstruction",
    "fd": "sample_quality",
    "recall": "sample_quality",
    "near_binary_fraction": "sample_sharpness",
}


def _side(
    run: Path, config: str, dataset: str, sets: list[str], scoring: list[str], threads: int | None
) -> dict[str, Any]:
    """Train one side into ``run`` and score it: its training summary and the kept report sections."""
    training = train_cli(run, "--config", config, "--dataset", dataset, *sets, threads=threads)
    report = evaluate(run, "--dataset", dataset, *scoring)
    return {"training": training} | {k: report.get(k) for k in KEEP}


@benchmark
def sharp(
    config: str = str(REPO / "configs" / "photos32-sharp.yaml"),
    dataset: str | None = None,
    minutes: float = 60.0,
    overrides: tuple[str, ...] = (),
    iw_samples: int = 5,
    n_samples: int = 1000,
    runs: Path | None = None,
    side_by_side: bool = True,
) -> dict[str, Any]:
    """--config and its non-adversarial twin (the same file with objective.name=elbo), each trained
    --minutes on --dataset and then scored by `vaelab evaluate` on the test split: PSNR / SSIM, the
    high-frequency power and Laplacian variance ratios of reconstructions and samples, the near-binary pixel
    fraction, sample FD / precision / recall. Side by side (the default) the two train and score at the same
    time, one thread each (on a 2-core machine, a core each); --no-side-by-side runs them one after the
    other with the threads torch picks. --runs DIR keeps both run directories (their grids), as DIR/sharp and
    DIR/twin. --dataset: a dataset name or path (default: photos32, found as the photos32 benchmark does)."""
    dataset = dataset or str(data_path(None))
    sides = {"sharp": [], "twin": ["objective.name=elbo"]}
    budget = [f"train.max_minutes={minutes}", "train.epochs=100000", "train.image_every=100000"]
    budget += ["train.num_threads=1"] if side_by_side else []
    scoring = [f"--iw-samples={iw_samples}", f"--n-samples={n_samples}"]
    out: dict[str, Any] = {"config": config, "dataset": dataset, "minutes": minutes}
    out["side_by_side"] = side_by_side
    with tempfile.TemporaryDirectory(prefix="sharp-") as tmp:
        jobs = {
            side: ((runs or Path(tmp)) / side, [f"--set={s}" for s in [*budget, *overrides, *extra]])
            for side, extra in sides.items()
        }
        threads = 1 if side_by_side else None
        with ThreadPoolExecutor(max_workers=len(sides) if side_by_side else 1) as pool:
            futures = {
                side: pool.submit(_side, run, config, dataset, sets, scoring, threads)
                for side, (run, sets) in jobs.items()
            }
            for side, extra in sides.items():
                out[side] = {"overrides": [*overrides, *extra]} | futures[side].result()
    out["summary"] = {
        key: {side: (out[side].get(part) or {}).get(key) for side in sides} for key, part in SUMMARY.items()
    }
    return out
