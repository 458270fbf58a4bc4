"""Crash safety: kills, SIGTERM, a full disk, and resuming inside an epoch."""

import errno
import importlib.util
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaelab.config import load_config
from vaelab.training import CheckpointError, load_checkpoint, save_checkpoint, train
from vaelab.training.signals import TrainingInterrupted

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fault_injection", REPO / "benchmarks" / "reliability.py")
fault_injection = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fault_injection)

TINY = ["model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]", "model.latent_dim=4",
        "train.batch_size=16", "train.device=cpu", "data.binarize=dynamic"]  # fmt: skip


def config(npz, epochs, *extra):
    return load_config(
        overrides=["data.name=npz", f"data.path={npz}", f"train.epochs={epochs}", *TINY, *extra]
    )


def weights(run):
    return load_file(str(Path(run) / "model" / "model.safetensors"))


def test_resume_inside_an_epoch_continues_the_same_batches(blobs_npz, tmp_path, monkeypatch, stop_at_step):
    full = train(config(blobs_npz, 2), tmp_path / "full", progress=False, log=False)

    stop_at_step(7)  # as if SIGTERM arrived during step 7 (of 12 per epoch)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 7"):
        train(config(blobs_npz, 2), tmp_path / "cut", progress=False, log=False)
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (0, 7, 7)
    monkeypatch.undo()
    resumed = train(config(blobs_npz, 2), tmp_path / "cut", resume=True, progress=False, log=False)
    a, b = weights(full.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[0]["train_elbo"] == pytest.approx(full.history[0]["train_elbo"], rel=1e-12)


def test_sigkill_at_random_moments_loses_at_most_n_steps_and_ends_identical(tmp_path):
    result = fault_injection.fault_injection(kills=3, epochs=2, checkpoint_every=5, seed=1, workdir=tmp_path)
    assert result["final_weights_identical"]
    assert result["max_steps_lost"] <= 5
    assert result["metrics_epochs"] == [1, 2]


def test_sigterm_writes_a_final_checkpoint_and_exits_cleanly(tmp_path):
    data = fault_injection.make_data(tmp_path / "d.npz")
    run, steps = tmp_path / "run", tmp_path / "steps"
    proc = fault_injection.run_child(fault_injection.train_args(data, run, 3, 0, False), steps)
    deadline = time.time() + 60
    while fault_injection.count_lines(steps) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert b"checkpoint saved" in proc.stderr.read()
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == fault_injection.count_lines(steps)  # nothing lost, even mid-epoch
    resume = fault_injection.run_child(fault_injection.train_args(data, run, 3, 0, True), tmp_path / "s2")
    assert resume.wait(timeout=120) == 0


def test_full_disk_keeps_the_previous_checkpoint(blobs_npz, tmp_path, monkeypatch):
    train(config(blobs_npz, 1), tmp_path / "run", progress=False, log=False)
    path = tmp_path / "run" / "checkpoint.pt"
    before = load_checkpoint(path)

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left.*previous checkpoint is intact"):
        save_checkpoint(path, {"model": {}, "epoch": 9})
    with pytest.raises(CheckpointError, match="No space left"):
        train(config(blobs_npz, 2), tmp_path / "run", resume=True, progress=False, log=False)
    monkeypatch.undo()
    after = load_checkpoint(path)
    assert after["epoch"] == before["epoch"] == 1
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
