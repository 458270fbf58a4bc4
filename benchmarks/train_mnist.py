"""Seed VAE on MNIST: vaelab's tensor-slice data path against a conventional per-item DataLoader.

Both paths train the same model (configs/seed.yaml) with the same objective, optimiser, seed and
dynamic binarisation for the same number of epochs, each in its own subprocess (so peak RSS is per
path); both are then scored on the MNIST test set (test -ELBO, nats, one posterior sample per image,
test set binarised once with a fixed seed). Prints one JSON object.

    python benchmarks/train_mnist.py --epochs 10            # needs MNIST under $VAELAB_DATA/mnist
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_path(path: str, epochs: int, workers: int, threads: int | None) -> dict:
    """Train with one data path in this process and return its timings and test ELBO."""
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from vaelab.config import load_config
    from vaelab.data import load_dataset
    from vaelab.evaluation import evaluate_elbo
    from vaelab.models import VAE
    from vaelab.objectives import build_objective
    from vaelab.runtime import derive_seed, seed_everything
    from vaelab.training.trainer import prepare_data, resolve_model_config, train

    if threads:
        torch.set_num_threads(threads)
    config = load_config(REPO / "configs" / "seed.yaml", [f"train.epochs={epochs}", "train.device=cpu"])
    test = load_dataset(config.data, "test", progress=False)
    train_set, val_set = prepare_data(config, progress=False)
    out: dict = {"path": path, "train_images": len(train_set)}
    if path == "vaelab":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False, data=(train_set, val_set))
        model = result.model
        out["epoch_train_seconds"] = [r["train_seconds"] for r in result.history]
        out["epoch_total_seconds"] = [r["epoch_seconds"] for r in result.history]
    else:

        class MNISTItems(Dataset):
            """What a conventional pipeline does: one PIL image per item, converted like ToTensor()."""

            def __init__(self, images: np.ndarray) -> None:
                self.images = images

            def __len__(self) -> int:
                return len(self.images)

            def __getitem__(self, i: int) -> torch.Tensor:
                img = Image.fromarray(self.images[i], mode="L")
                return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)

        seed_everything(config.train.seed)
        config = resolve_model_config(config, train_set.image_shape)
        model = VAE(config.model)
        objective = build_objective(config.objective)
        opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=config.train.betas)
        loader = DataLoader(
            MNISTItems(train_set.images[:, 0].numpy()),
            batch_size=config.train.batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(config.train.seed),
        )
        times = []
        for epoch in range(1, epochs + 1):
            torch.manual_seed(derive_seed(config.train.seed, "epoch", epoch))
            model.train()
            t0 = time.perf_counter()
            for x in loader:
                x = torch.bernoulli(x)  # dynamic binarisation, as in the vaelab path
                terms = objective(model(x))
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        out["epoch_train_seconds"] = times
        out["workers"] = workers
    seed = derive_seed(config.data.split_seed, "test-binarize")
    test_elbo = evaluate_elbo(model, test, batch_size=1000, binarize=config.data.binarize, seed=seed)
    out["test_neg_elbo"] = -test_elbo["elbo"]
    out["test_kl"] = test_elbo["kl"]
    out["median_epoch_train_seconds"] = statistics.median(out["epoch_train_seconds"])
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--_child", nargs=2, metavar=("PATH", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(run_path(args._child[0], args.epochs, int(args._child[1]), args.threads)))
        return

    from vaelab.runtime import environment

    results = []
    for path, workers in [("vaelab", 0)] + [("dataloader", w) for w in args.workers]:
        cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--_child", path, str(workers)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"running {path} (workers={workers}) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ours = results[0]
    for r in results[1:]:
        r["speedup_of_vaelab"] = r["median_epoch_train_seconds"] / ours["median_epoch_train_seconds"]
        r["test_neg_elbo_difference"] = ours["test_neg_elbo"] - r["test_neg_elbo"]
    report = {
        "benchmark": "train_mnist",
        "config": "configs/seed.yaml",
        "epochs": args.epochs,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        "results": results,
        "min_speedup_of_vaelab": min(r["speedup_of_vaelab"] for r in results[1:]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
