"""Every registered benchmark runs at its smallest setting and prints a report in the common schema.

The smallest settings take seconds; those marked slow take longer (a server, subprocesses, a feature
net to train) and run in CI with the rest of the suite (``-m "not slow"`` leaves them out). A setting
that needs MNIST, photos32 or pythae is skipped where they are missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import harness

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DIGITS = " --set data.name=digits"
VENV = harness.PYTHAE_VENV  # the peer's own environment (made on first use)
TINY_MLP = " --set model.encoder.hidden_dims=[32] --set model.decoder.hidden_dims=[32]"


def case(args: str, needs: str = "", slow: bool = True) -> tuple[list[str], set[str], bool]:
    """A smallest setting: its arguments, what it needs ("mnist", "photos32", "pythae", "cuda", "run": a
    tiny trained run), and whether it is slow."""
    return args.split(), set(needs.split()), slow


SMOKE = {
    "throughput": case(
        "--variants fp32 --steps 1 --rounds 1 --profile 3 --iw-images 2 --iw-k 2 --iw-variants fp32",
        slow=False,
    ),
    "throughput of an adversarial config": case(
        "--config configs/photos32-sharp.yaml --set model.image_shape=[3,32,32] --set objective.disc_start=0"
        " --set train.batch_size=4 --variants fp32 --steps 1 --rounds 1 --skip iw_eval sampling",
        slow=False,
    ),
    "conv_kernels": case("--shapes 4x8@6 8x8@6/2 --precisions fp32 --batch 2", slow=False),
    "peer_pythae": case("--steps 1 --rounds 1 --config configs/conv.yaml", "mnist pythae"),
    "scaling": case("--steps 2 --procs 1 --batches 16 --repeats 1", "mnist"),
    "train_mnist": case("--epochs 1 --variants vaelab" + DIGITS + TINY_MLP),
    "packed_data": case("--gigabytes 0.0005 --steps 2" + DIGITS),
    "feature_references": case("--dataset digits --n 50"),
    "nll_vs_minutes": case("{run} --iw-samples 2 --subset 10 --plot {tmp}/nll.png", "run"),
    "priors": case(
        "{run} --n 20 --temperatures 1 0.8 --grids {tmp}/grids --set gmm.components=2 --set flow.steps=2"
        " --set diffusion.steps=2 --set diffusion.sample_steps=2 --set two_stage.steps=2",
        "run",
    ),
    "guidance": case(
        "--epochs 1 --per-class 8 --guidances 1 2 --temperatures 1 --grid {tmp}/g.png --grid-per-class 2"
        + DIGITS
        + " --set model.condition.label_dropout=0.2"
    ),
    "control_mig": case("--steps 2 --batch-size 16 --objective vae"),
    "stability": case("--epochs 1 --cases unguarded guarded" + DIGITS + TINY_MLP),
    "serve_latency": case("--requests 3 --warmup 1"),
    "fault_injection": case("--kills 1 --epochs 1"),
    "photos32": case(
        "--config configs/folder-rgb.yaml --set train.max_minutes=0.02 --iw-samples 1 --subset 8"
        " --n-samples 16",
        "photos32",
    ),
    "photos32 with its peer": case(
        "--config configs/folder-rgb.yaml --peer-minutes 0.02 --n-samples 16 --iw-samples 1 --subset 8"
        " --feature-epochs 1 --grids {tmp}/grids",
        "photos32 pythae",
    ),
    "lossless_codecs": case("--limit 6", "photos32", slow=False),
    "ood": case(
        "--mnist-run {run} --photos32-run {run} --count 12 --regret-count 4 --plots {tmp}", "run mnist"
    ),
    "ood_states": case("{run} {run} --count 12", "run mnist"),
    "ood_speed": case("{run} --repeats 1", "run"),
    "gpu_speed": case(
        "--config configs/seed.yaml --batch-sizes 4 --variants fp32 bf16 --steps 1 --rounds 1" + TINY_MLP,
        "cuda",
    ),
    "gpu_steps": case(
        "--config configs/seed.yaml --device cpu --steps 2 --precisions fp32 --iw-samples 1 --subset 4"
        + DIGITS
        + TINY_MLP
    ),
    "sharp": case(
        "--config configs/mnist-sharp.yaml --dataset digits --minutes 0.02 --iw-samples 1 --n-samples 16"
        " --set objective.disc_start=0 --set train.batch_size=16"
    ),
    "frontier": case(
        "--configs configs/seed.yaml --minutes 0.02 --points 2 --iw-samples 2 --subset 10 --no-peer"
        + TINY_MLP,
        "mnist",
    ),
    "frontier with its peer": case(
        "--configs configs/seed.yaml --minutes 0.02 --points 2 --iw-samples 2 --subset 10 --plot {tmp}/f.png"
        + TINY_MLP,
        "mnist pythae",
    ),
    "iw_precision": case("{run} --images 6 --iw-samples 3", "run"),
    "iw_shared_features": case(
        "--set model.encoder.channels=[4,4,4] --set model.decoder.channels=[4,4,4] --images 2 --k 2"
        " --rounds 1 --number 1 --no-compile --precision fp32",
        slow=False,
    ),
    "detail_cost": case("{run} --dataset {run}/../blobs.npz --max-images 20", "run"),
    "clipped_samples": case("{run} {run} --n 8", "run"),
}


def test_every_registered_benchmark_has_a_smallest_setting():
    assert {key.split()[0] for key in SMOKE} == set(harness.registry())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny MLP trained for one epoch on four-class synthetic images, with a snapshot."""
    from vaelab.cli import main
    from vaelab.data.synthetic import quadrant_squares

    tmp = tmp_path_factory.mktemp("run")
    images, labels = quadrant_squares(240, 12, 0)
    np.savez(tmp / "blobs.npz", images=images, labels=labels)
    sets = ["data.binarize=dynamic", "model.latent_dim=4", "train.snapshot_every=1", "train.image_every=1000"]
    args = ["train", "--dataset", str(tmp / "blobs.npz"), "--run-dir", str(tmp / "run"), "--epochs", "1"]
    assert (
        main([*args, "--no-progress", "--device", "cpu", *TINY_MLP.split(), *(f"--set={s}" for s in sets)])
        == 0
    )
    return tmp / "run"


def smoke_cases():
    for key, (args, needs, slow) in SMOKE.items():
        yield pytest.param(key.split()[0], args, needs, id=key, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize(("name", "args", "needs"), list(smoke_cases()))
def test_the_smallest_setting_runs(name, args, needs, request, tmp_path, monkeypatch, capsys):
    if "mnist" in needs or "photos32" in needs:
        wanted = "mnist" if "mnist" in needs else "photos32"
        if not (SHARED / wanted).is_dir():
            pytest.skip(f"{SHARED / wanted} not present")
        monkeypatch.setenv("VAELAB_DATA", str(SHARED))
    if "cuda" in needs and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; torch sees none on this machine")
    if name == "peer_pythae" and importlib.util.find_spec("pythae") is None:
        pytest.skip("pythae is not installed (pip install 'vaelab[peer]')")
    if name != "peer_pythae" and "pythae" in needs and not VENV.is_dir():
        pytest.skip("no benchmarks/.venv-pythae (made on first use; needs the network)")
    run = request.getfixturevalue("tiny_run") if "run" in needs else None
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    monkeypatch.chdir(harness.REPO)
    assert harness.main([name, *args, "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == name and report["results"]
    assert list(report) == ["name", "command", "machine", "date", "seed", "settings", "results"]
