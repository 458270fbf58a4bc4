"""The checkpoint object: every piece of state a resume needs survives it (the loss scaler, the
schedules, the RNGs, the metric sums), and checkpoints of the previous format still resume."""

import ast
from pathlib import Path

import pytest
import torch

from vaelab.config import load_config
from vaelab.training import CheckpointError, load_checkpoint, save_checkpoint, train
from vaelab.training import state as state_module
from vaelab.training.checkpoint import Checkpoint, RankState
from vaelab.training.signals import TrainingInterrupted

TINY = ["model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]", "model.latent_dim=4",
        "train.batch_size=16", "train.device=cpu", "data.binarize=dynamic", "train.lr_schedule=cosine",
        "train.lr_warmup_steps=3", "train.ema_decay=0.9", "train.grad_clip=50"]  # fmt: skip


def config(npz, epochs=2):
    return load_config(overrides=["data.name=npz", f"data.path={npz}", f"train.epochs={epochs}", *TINY])


def active_scaler(monkeypatch):
    """An fp16-style loss scaler on the CPU, growing every 3 steps, so its state changes during a run
    (fp32 maths: scaling by a power of two leaves the gradients exact)."""

    def build(tc, device):
        return torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)

    monkeypatch.setattr(state_module, "build_scaler", build)


def assert_same_state(a: Checkpoint, b: Checkpoint) -> None:
    for part in ("model", "ema"):
        da, db = getattr(a, part), getattr(b, part)
        assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da), part
    sa, sb = a.optimizer["state"], b.optimizer["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i]), "Adam's moments"
    assert a.scheduler == b.scheduler and a.scaler == b.scaler and a.guard == b.guard
    assert (a.epoch, a.batch, a.step) == (b.epoch, b.batch, b.step)
    assert torch.equal(a.binarize_rng, b.binarize_rng)
    assert all(torch.equal(x.rng, y.rng) for x, y in zip(a.ranks, b.ranks, strict=True)), "torch RNG"


def cut_at(step, npz, run, monkeypatch, stop_at_step):
    """Train until a SIGTERM at ``step`` stops the run; the monkeypatches are undone afterwards."""
    stop_at_step(step)
    with pytest.raises(TrainingInterrupted, match=f"at step {step};"):
        train(config(npz), run, progress=False, log=False)
    monkeypatch.undo()


def test_scaler_scheduler_and_rng_state_survive_a_resume(blobs_npz, tmp_path, monkeypatch, stop_at_step):
    active_scaler(monkeypatch)
    full = train(config(blobs_npz), tmp_path / "full", progress=False, log=False)
    cut_at(7, blobs_npz, tmp_path / "cut", monkeypatch, stop_at_step)  # step 7 of 12 in epoch 1
    active_scaler(monkeypatch)
    saved = Checkpoint.load(tmp_path / "cut" / "checkpoint.pt")
    assert saved.scaler["scale"] == 2.0**12 and saved.scaler["_growth_tracker"] == 1  # grew at 3 and 6
    assert saved.ranks[0].sums["images"] == 7 * 16
    resumed = train(config(blobs_npz), tmp_path / "cut", resume=True, progress=False, log=False)
    a, b = (Checkpoint.load(r.run_dir / "checkpoint.pt") for r in (full, resumed))
    assert a.scaler["scale"] == 2.0**18  # 24 steps: eight growths, none lost to the resume
    assert_same_state(a, b)
    keys = ["train_loss", "train_elbo", "train_kl", "lr", "grad_norm_mean", "grad_norm_max", "val_elbo"]
    for x, y in zip(full.history, resumed.history, strict=True):
        assert {k: x[k] for k in keys} == {k: y[k] for k in keys}


def as_version_1(state: dict) -> dict:
    """A checkpoint in the layout vaelab wrote before the scaler and the named sums: the guard's
    counters as a list, each rank's sums as one vector (terms, then images), no scaler."""
    old = {k: v for k, v in state.items() if k != "scaler"}
    old["version"] = 1
    g = state["guard"]
    old["guard"] = [g[k] for k in ("skipped_nonfinite", "skipped_large", "clipped", "norm_count")]
    old["guard"] += [g["norm_sum"], g["norm_max"]]
    names = ("loss", "elbo", "log_px_z", "kl", "images")
    old["ranks"] = [
        {"rng": r["rng"], "sums": torch.tensor([r["sums"][n] for n in names], dtype=torch.float64)}
        for r in state["ranks"]
    ]
    return old


def test_a_checkpoint_of_the_previous_format_resumes_to_the_same_weights(
    blobs_npz, tmp_path, monkeypatch, stop_at_step
):
    full = train(config(blobs_npz), tmp_path / "full", progress=False, log=False)
    cut_at(7, blobs_npz, tmp_path / "cut", monkeypatch, stop_at_step)
    path = tmp_path / "cut" / "checkpoint.pt"
    torch.save(as_version_1(load_checkpoint(path)), path)
    resumed = train(config(blobs_npz), tmp_path / "cut", resume=True, progress=False, log=False)
    a, b = (Checkpoint.load(r.run_dir / "checkpoint.pt") for r in (full, resumed))
    assert_same_state(a, b)
    assert full.history[0]["train_elbo"] == resumed.history[0]["train_elbo"]


def test_the_checkpoint_round_trips_through_a_weights_only_load(tmp_path):
    ckpt = Checkpoint(
        model={"w": torch.ones(2)},
        optimizer={"state": {}, "param_groups": []},
        epoch=1,
        batch=3,
        step=9,
        scaler={"scale": 1024.0, "_growth_tracker": 2},
        guard={"clipped": 1.0, "skips_in_a_row": 0.0},
        binarize_rng=torch.Generator().get_state(),
        ranks=[RankState(rng=torch.get_rng_state(), sums={"loss": 1.5, "images": 3.0})],
    )
    ckpt.save(tmp_path / "c.pt")
    back = Checkpoint.load(tmp_path / "c.pt")
    assert (back.epoch, back.batch, back.step, back.scaler, back.guard) == (1, 3, 9, ckpt.scaler, ckpt.guard)
    assert back.ema is None and back.ranks[0].sums == {"loss": 1.5, "images": 3.0}
    assert torch.equal(back.ranks[0].rng, ckpt.ranks[0].rng)


def test_unknown_versions_and_missing_parts_are_checkpoint_errors(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"model": {}})
    with pytest.raises(CheckpointError, match="missing or malformed"):
        Checkpoint.load(tmp_path / "a.pt")
    torch.save({"version": 99, "model": {}}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "b.pt")


def test_training_imports_nothing_from_the_layers_above_it():
    """The loop sits below the CLI, the server and the top-level config facade, never the reverse."""
    above = ("vaelab.cli", "vaelab.serve", "vaelab.config")
    package = Path(__file__).resolve().parents[2] / "src" / "vaelab" / "training"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n == "vaelab" or n.startswith(above)]
            assert not bad, f"{path.name} imports {bad}"
