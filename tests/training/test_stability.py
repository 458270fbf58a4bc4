"""The update guard on constructed cases: NaN and exploding gradients in real runs, and clipping."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaelab.training import TrainConfig, load_checkpoint, train
from vaelab.training import objective as trainer_module  # where the loop builds its objective
from vaelab.training.distributed import DistContext
from vaelab.training.stability import DivergedError, PoisonedWeightsError, UpdateGuard, check_finite

SINGLE = DistContext()


def linear_with_grad(grad: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 2, bias=False)
    layer.weight.grad = torch.full((2, 2), grad)  # norm = 2 * |grad|
    return layer


def test_guard_clips_a_large_gradient_to_the_threshold_and_counts_it():
    layer = linear_with_grad(30.0)
    guard = UpdateGuard(TrainConfig(grad_clip=1.0), layer.parameters())
    assert guard.allow(torch.tensor(1.0), SINGLE)
    assert layer.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    summary = guard.summary()
    assert summary["clipped_updates"] == 1 and summary["skipped_updates"] == 0
    assert summary["grad_norm_max"] == pytest.approx(60.0)  # logged before clipping


def test_guard_skips_an_update_whose_norm_passes_the_skip_threshold():
    guard = UpdateGuard(TrainConfig(grad_clip=1.0, skip_threshold=100.0), linear_with_grad(1e4).parameters())
    assert not guard.allow(torch.tensor(1.0), SINGLE)
    ok = UpdateGuard(TrainConfig(skip_threshold=100.0), linear_with_grad(1.0).parameters())
    assert ok.allow(torch.tensor(1.0), SINGLE)
    assert guard.summary()["skipped_large_grad"] == 1 and guard.summary()["skipped_updates"] == 1


@pytest.mark.parametrize("loss, grad", [(math.nan, 1.0), (1.0, math.inf), (1.0, math.nan)])
def test_guard_skips_non_finite_losses_and_gradients(loss, grad):
    guard = UpdateGuard(TrainConfig(), linear_with_grad(grad).parameters())
    assert not guard.allow(torch.tensor(loss), SINGLE)
    assert guard.summary()["skipped_nonfinite"] == 1
    off = UpdateGuard(TrainConfig(skip_nonfinite=False), linear_with_grad(grad).parameters())
    assert off.allow(torch.tensor(loss), SINGLE)  # switched off: the update goes ahead


def test_guard_stops_a_run_whose_updates_are_all_skipped():
    """A diverged model (every step non-finite) must stop with a clear error, not skip to the end."""
    layer = linear_with_grad(math.nan)
    guard = UpdateGuard(TrainConfig(max_skips_in_a_row=3), layer.parameters())
    assert not guard.allow(torch.tensor(1.0), SINGLE)
    layer.weight.grad = torch.ones(2, 2)
    assert guard.allow(torch.tensor(1.0), SINGLE)  # a good step in between starts the count again
    layer.weight.grad = torch.full((2, 2), math.nan)
    assert not guard.allow(torch.tensor(1.0), SINGLE)
    assert not guard.allow(torch.tensor(1.0), SINGLE)
    with pytest.raises(DivergedError, match="the last 3 updates were all skipped"):
        guard.allow(torch.tensor(1.0), SINGLE)
    never = UpdateGuard(TrainConfig(max_skips_in_a_row=0), layer.parameters())
    assert not any(never.allow(torch.tensor(1.0), SINGLE) for _ in range(200))


def test_check_finite_names_the_poisoned_tensor():
    layer = torch.nn.Linear(2, 2)
    check_finite({"model": layer, "EMA model": None}, "a checkpoint")
    with torch.no_grad():
        layer.bias[0] = math.nan
    with pytest.raises(PoisonedWeightsError, match=r"a checkpoint: model tensor 'bias'"):
        check_finite({"model": layer}, "a checkpoint")


class Poisoned:
    """Wraps the objective: on call ``at`` its loss is multiplied by ``factor`` (NaN, or huge)."""

    def __init__(self, inner, at, factor):
        self.inner, self.at, self.factor, self.calls = inner, at, factor, 0
        self.forward_kwargs = inner.forward_kwargs

    def __call__(self, out, kl_weight=1.0):
        terms = self.inner(out, kl_weight)
        self.calls += 1
        if self.calls == self.at:
            terms.loss = terms.loss * self.factor
        return terms


def poison(monkeypatch, at, factor):
    build = trainer_module.build_objective
    monkeypatch.setattr(
        trainer_module, "build_objective", lambda cfg, **kw: Poisoned(build(cfg, **kw), at, factor)
    )


def rows(run):
    return [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def test_a_nan_batch_is_skipped_counted_and_the_run_completes(tiny_config, tmp_path, monkeypatch):
    poison(monkeypatch, at=3, factor=math.nan)
    result = train(tiny_config(2), tmp_path / "run", progress=False, log=False)
    metrics = rows(result.run_dir)
    assert [r["skipped_nonfinite"] for r in metrics] == [1, 0]
    assert [r["skipped_updates"] for r in metrics] == [1, 0]
    assert all(math.isfinite(r["train_elbo"]) and math.isfinite(r["val_elbo"]) for r in metrics)
    weights = load_file(str(result.run_dir / "model" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_huge_gradient_is_clipped_or_skipped(tiny_config, tmp_path, monkeypatch):
    poison(monkeypatch, at=2, factor=1e8)
    clipped = train(tiny_config(1, "train.grad_clip=1e3"), tmp_path / "clip", progress=False, log=False)
    (row,) = rows(clipped.run_dir)
    assert row["clipped_updates"] >= 1 and row["skipped_updates"] == 0 and row["grad_norm_max"] > 1e6
    monkeypatch.undo()
    poison(monkeypatch, at=2, factor=1e8)
    skipped = train(tiny_config(1, "train.skip_threshold=1e5"), tmp_path / "skip", progress=False, log=False)
    (row,) = rows(skipped.run_dir)
    assert row["skipped_large_grad"] == 1 and row["skipped_updates"] == 1
    assert math.isfinite(row["val_elbo"])


def test_poisoned_weights_never_reach_a_checkpoint_or_the_saved_model(tiny_config, tmp_path, monkeypatch):
    poison(monkeypatch, at=9, factor=math.nan)  # in epoch 2 (6 batches an epoch)
    cfg = tiny_config(2, "train.skip_nonfinite=false")
    with pytest.raises(PoisonedWeightsError, match="holds NaN"):
        train(cfg, tmp_path / "run", progress=False, log=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1  # epoch 1's checkpoint is intact and clean
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    weights = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


SCRIPT = """
import math, sys
from vaelab.config import load_config
from vaelab.training import train
from vaelab.training import objective as t
import torch.distributed as dist

build = t.build_objective

def poisoned(cfg, **kw):
    inner, calls = build(cfg, **kw), [0]
    def objective(out, kl_weight=1.0):
        terms = inner(out, kl_weight)
        calls[0] += 1
        if calls[0] == 2 and dist.get_rank() == 1:  # a NaN on rank 1 only
            terms.loss = terms.loss * math.nan
        return terms
    objective.forward_kwargs = inner.forward_kwargs
    return objective

t.build_objective = poisoned
overrides = ["data.name=npz", f"data.path={sys.argv[1]}", "train.epochs=2", "train.batch_size=32",
             "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]", "model.latent_dim=4",
             "train.device=cpu", "train.num_threads=1", "train.grad_clip=5", "train.ema_decay=0.9",
             "train.kl_anneal=linear", "train.kl_anneal_steps=4", "train.lr_warmup_steps=3"]
train(load_config(overrides=overrides), sys.argv[2], progress=False, log=False)
"""


def test_a_nan_on_one_rank_skips_the_step_on_every_rank(blobs_npz, tmp_path):
    script = tmp_path / "poison.py"
    script.write_text(textwrap.dedent(SCRIPT))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [*cmd, str(script), str(blobs_npz), str(run)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = rows(run)
    assert [r["skipped_nonfinite"] for r in metrics] == [1, 0]
    state = load_checkpoint(run / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values())  # the replicas stayed in step
    assert "ema" in state
