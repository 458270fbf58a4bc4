"""vaelab's data path: against a conventional per-item DataLoader pipeline, and on data larger than memory."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks.harness import benchmark, in_subprocess, train_cli, train_in_process
from benchmarks.speed import SEED_CONFIG, build_model, switches
from vaelab.config import load_config
from vaelab.data import DataConfig, DataError, PackWriter, batches, load_dataset, to_float
from vaelab.evaluation import evaluate_elbo
from vaelab.objectives import build_objective
from vaelab.perf import flush_denormals
from vaelab.runtime import derive_seed, peak_rss_mb
from vaelab.training import prepare_data


@benchmark
def train_mnist(
    epochs: int = 5,
    config: str = SEED_CONFIG,
    overrides: tuple[str, ...] = (),
    variants: tuple[str, ...] = ("vaelab", "vaelab-bf16", "vaelab-compile-bf16"),
) -> dict[str, Any]:
    """How much faster is vaelab's training loop than a per-item DataLoader pipeline (torchvision-style
    Dataset, eager fp32, torch's Adam) on the same model? One process per --variants entry (switches
    joined by "-"), the pipelines' epochs alternating; the median over epochs 2.. of the time ratio, and
    both models' test -ELBO."""
    results, threads = [], torch.get_num_threads()
    for variant in variants:
        print(f"{variant}, interleaved with the DataLoader pipeline ...", file=sys.stderr, flush=True)
        settings = {"config": config, "overrides": list(overrides), "threads": threads}
        results.append(in_subprocess(interleaved_epochs, variant=variant, epochs=epochs, **settings))
    return {"variants": results, "speedup_over_dataloader": {r["variant"]: r["speedup"] for r in results}}


class TorchvisionStyleMNIST(Dataset):
    """The conventional pipeline, as torchvision's MNIST with ``ToTensor()``: one PIL image per item,
    converted to a float tensor (``transforms.functional.to_tensor``), and an int target, then collated."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.data, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pic = Image.fromarray(self.data[i].numpy(), mode="L")
        x = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        x = x.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return x.to(dtype=torch.get_default_dtype()).div(255), int(self.targets[i])


def interleaved_epochs(
    variant: str, epochs: int, config: str, overrides: list[str], threads: int
) -> dict[str, Any]:
    """One variant against the DataLoader pipeline, in this process: epoch times and both test -ELBOs."""
    torch.set_num_threads(threads)
    c = load_config(config, [f"train.epochs={epochs}", "train.device=cpu", *overrides, *switches(variant)])
    test, (train_set, val_set) = load_dataset(c.data, "test", progress=False), prepare_data(c, progress=False)
    # The conventional model: same architecture and seed, eager fp32, torch's default Adam.
    resolved, conventional = build_model(c, train_set.image_shape)
    objective = build_objective(resolved.objective)
    opt = torch.optim.Adam(conventional.parameters(), lr=c.train.lr, betas=c.train.betas)
    data = TorchvisionStyleMNIST(train_set.images[:, 0], train_set.labels)
    gen = torch.Generator().manual_seed(c.train.seed)
    loader = DataLoader(data, c.train.batch_size, shuffle=True, generator=gen)
    dataloader_seconds: list[float] = []

    def conventional_epoch(row: dict[str, Any]) -> None:
        rng = torch.get_rng_state()  # vaelab's own stream stays as it would be without this epoch
        torch.manual_seed(derive_seed(c.train.seed, "epoch", row["epoch"]))
        # vaelab flushes denormals (train.flush_denormals); a conventional loop runs in torch's default mode.
        with flush_denormals(False):
            start = time.perf_counter()
            conventional.train()
            for x, _ in loader:
                loss = objective(conventional(torch.bernoulli(x))).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            dataloader_seconds.append(time.perf_counter() - start)
        torch.set_rng_state(rng)

    result, _ = train_in_process(c, data=(train_set, val_set), on_epoch_end=conventional_epoch)
    vaelab_seconds = [r["train_seconds"] for r in result.history]
    ratios = [d / v for d, v in zip(dataloader_seconds, vaelab_seconds, strict=True)]
    later = slice(1 if epochs > 1 else 0, None)  # epoch 1 carries the warm-up (and compilation)
    seed, binarize = derive_seed(c.data.split_seed, "test-binarize"), c.data.binarize
    scores = {
        name: -evaluate_elbo(model, test, batch_size=1000, binarize=binarize, seed=seed)["elbo"]
        for name, model in (("vaelab", result.model), ("dataloader", conventional.eval()))
    }
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for images, _ in batches(train_set, c.train.batch_size, shuffle=True, generator=gen):
        to_float(images, "dynamic", generator=gen)
    data_only = {"vaelab": time.perf_counter() - start}
    start = time.perf_counter()
    for x, _ in loader:
        torch.bernoulli(x)
    data_only["dataloader"] = time.perf_counter() - start
    return {
        "variant": variant,
        "train_images": len(train_set),
        "vaelab_epoch_seconds": vaelab_seconds,
        "dataloader_epoch_seconds": dataloader_seconds,
        "ratio_per_epoch": ratios,
        "speedup": statistics.median(ratios[later]),
        "vaelab_images_per_s": len(train_set) / statistics.median(vaelab_seconds[later]),
        "epoch_peak_rss_mb": [r.get("peak_rss_mb") for r in result.history],
        "epoch_peak_fraction": [r.get("peak_fraction") for r in result.history],
        "data_only_epoch_seconds": data_only,
        "test_neg_elbo": scores,
        "peak_rss_mb": peak_rss_mb(),
    }


@benchmark
def packed_data(
    gigabytes: float = 4.0, steps: int = 2000, workdir: Path | None = None, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Data larger than memory: pack >= --gigabytes of pixels (MNIST training digits, else the embedded
    ones, shifted at random), train the seed VAE on them through memory maps and on MNIST in memory,
    twice each in turn, each run in its own process (so each peak RSS is its own): images/s, peak RSS."""
    cli = ["--config", SEED_CONFIG, "--device=cpu", "--epochs=1000", f"--set=train.max_steps={steps}"]
    cli += ["--set=data.val_fraction=0.002", "--set=train.image_every=1000"]
    cli += [f"--set={o}" for o in overrides]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="vaelab-packed-") as tmp:
        packed = Path(tmp) / "packed"
        built, runs = pack_digits(packed, gigabytes), []
        for kind in ("memory", "packed") * 2:
            where = ["--set=data.name=packed", f"--set=data.path={packed}"] if kind == "packed" else []
            runs.append({"path": kind} | train_cli(Path(tmp) / f"run-{len(runs)}", *cli, *where))
    best = {kind: max(r["images_per_s"] for r in runs if r["path"] == kind) for kind in ("memory", "packed")}
    return {
        "packed_set": built,
        "runs": runs,
        "best_images_per_s": best,
        "packed_over_memory": best["packed"] / best["memory"],
        "packed_peak_rss_mb": max(r["peak_rss_mb"] for r in runs if r["path"] == "packed"),
    }


def pack_digits(out: Path, gigabytes: float, chunk: int = 100_000) -> dict[str, Any]:
    """Write the packed synthetic set chunk by chunk (never all of it in memory)."""
    try:
        base = load_dataset(DataConfig(name="mnist", download=False), "train", progress=False)
    except DataError:
        base = load_dataset(DataConfig(name="digits"), "train", progress=False)
    src, rng, start = base.images.numpy(), np.random.default_rng(0), time.perf_counter()
    total = int(gigabytes * 1e9 / src[0].size) + 1
    writer = PackWriter(out, tuple(src.shape[1:]), name=f"synthetic-{base.name}", shard_bytes=512 << 20)
    for written in range(0, total, chunk):
        picked = src[rng.integers(0, len(src), min(chunk, total - written))]
        writer.append(np.roll(picked, int(rng.integers(-2, 3)), axis=-1))
    writer.close()
    return {"images": total, "bytes": total * src[0].size, "pack_seconds": time.perf_counter() - start}
