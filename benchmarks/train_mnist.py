"""A VAE on MNIST: vaelab's tensor-slice data path against a conventional per-item DataLoader.

Both paths train the same model (``--config``, default configs/seed.yaml) with the same objective,
optimiser, seed and dynamic binarisation for the same number of epochs, each in its own subprocess
(so peak RSS is per path); both are then scored on the MNIST test set (test -ELBO, nats, one
posterior sample per image, test set binarised once with a fixed seed). Prints one JSON object.

    python benchmarks/train_mnist.py --epochs 10            # needs MNIST under $VAELAB_DATA/mnist
    python benchmarks/train_mnist.py --config configs/conv.yaml --epochs 2 --variants vaelab-channels_last
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _data_only_seconds(path: str, train_set, loader) -> float:
    """One epoch of producing binarised float batches and nothing else: the data path's own cost."""
    import torch

    from vaelab.data import batches, to_float

    t0 = time.perf_counter()
    if loader is None:
        gen = torch.Generator().manual_seed(0)
        for images, _ in batches(train_set, 128, shuffle=True, generator=gen):
            to_float(images, "dynamic", generator=gen)
    else:
        for x, _ in loader:
            torch.bernoulli(x)
    return time.perf_counter() - t0


def run_path(path: str, epochs: int, workers: int, threads: int | None, config_file: str) -> dict:
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
    from vaelab.runtime import derive_seed, peak_rss_mb, seed_everything
    from vaelab.training.trainer import prepare_data, resolve_model_config, train

    if threads:
        torch.set_num_threads(threads)
    overrides = [f"train.epochs={epochs}", "train.device=cpu"]
    if "bf16" in path:
        overrides.append("train.precision=bf16")
    if "compile" in path:
        overrides.append("train.compile=true")
    if "channels_last" in path:
        overrides.append("train.channels_last=true")
    config = load_config(config_file, overrides)
    test = load_dataset(config.data, "test", progress=False)
    train_set, val_set = prepare_data(config, progress=False)
    out: dict = {"path": path, "train_images": len(train_set)}
    if path.startswith("vaelab"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False, data=(train_set, val_set))
        model = result.model
        out["epoch_train_seconds"] = [r["train_seconds"] for r in result.history]
        out["epoch_total_seconds"] = [r["epoch_seconds"] for r in result.history]
        out["epoch_peak_rss_mb"] = [r.get("peak_rss_mb") for r in result.history]
        out["epoch_peak_fraction"] = [r.get("peak_fraction") for r in result.history]
    else:

        class TorchvisionStyleMNIST(Dataset):
            """The conventional pipeline, as torchvision.datasets.MNIST with transforms.ToTensor():
            one PIL image per item, converted to a float tensor, and an int target, then collated."""

            def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
                self.data, self.targets = images, targets

            def __len__(self) -> int:
                return len(self.data)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
                img, target = self.data[i], int(self.targets[i])
                pic = Image.fromarray(img.numpy(), mode="L")
                # transforms.functional.to_tensor for an 8-bit PIL image:
                x = torch.from_numpy(np.array(pic, np.uint8, copy=True))
                x = x.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
                return x.to(dtype=torch.get_default_dtype()).div(255), target

        seed_everything(config.train.seed)
        config = resolve_model_config(config, train_set.image_shape)
        model = VAE(config.model)
        objective = build_objective(config.objective)
        # The conventional loop: torch's default Adam, torch.bernoulli for dynamic binarisation.
        opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=config.train.betas)
        loader = DataLoader(
            TorchvisionStyleMNIST(train_set.images[:, 0], train_set.labels),
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
            for x, _target in loader:
                x = torch.bernoulli(x)  # dynamic binarisation, as in the vaelab path
                terms = objective(model(x))
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        out["epoch_train_seconds"] = times
        out["workers"] = workers
    if path == "dataloader" or path == "vaelab":
        out["data_only_epoch_seconds"] = _data_only_seconds(
            path, train_set, loader if path == "dataloader" else None
        )
    seed = derive_seed(config.data.split_seed, "test-binarize")
    test_elbo = evaluate_elbo(model, test, batch_size=1000, binarize=config.data.binarize, seed=seed)
    out["test_neg_elbo"] = -test_elbo["elbo"]
    out["test_kl"] = test_elbo["kl"]
    out["median_epoch_train_seconds"] = statistics.median(out["epoch_train_seconds"])
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--config", default=str(REPO / "configs" / "seed.yaml"), help="any model config YAML")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    p.add_argument(
        "--variants",
        nargs="*",
        default=["vaelab-bf16", "vaelab-compile", "vaelab-compile-bf16"],
        help="vaelab variants beside the default: vaelab-bf16, vaelab-compile, vaelab-channels_last, ...",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--_child", nargs=2, metavar=("PATH", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(
            json.dumps(run_path(args._child[0], args.epochs, int(args._child[1]), args.threads, args.config))
        )
        return

    from vaelab.runtime import environment

    results = []
    paths = [("vaelab", 0)] + [(v, 0) for v in args.variants] + [("dataloader", w) for w in args.workers]
    for path, workers in paths:
        cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--config", args.config]
        cmd += ["--_child", path, str(workers)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"running {path} (workers={workers}) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ours = results[0]
    conventional = [r for r in results if r["path"] == "dataloader"]
    for r in results:
        if r["path"] != "vaelab":
            r["speedup_over_this_of_vaelab_default"] = (
                r["median_epoch_train_seconds"] / ours["median_epoch_train_seconds"]
            )
            r["test_neg_elbo_minus_vaelab_default"] = r["test_neg_elbo"] - ours["test_neg_elbo"]
    report = {
        "benchmark": "train_mnist",
        "config": args.config,
        "epochs": args.epochs,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        "results": results,
        "min_speedup_of_vaelab_over_dataloader": min(
            r["speedup_over_this_of_vaelab_default"] for r in conventional
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
