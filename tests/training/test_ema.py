"""EMA weights, the time budget and the per-epoch posterior-health log, in real tiny runs; and an
interrupted run with every stabiliser on resumes to the same weights as one that never stopped."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vaelab.models import VAE
from vaelab.training import load_checkpoint, train
from vaelab.training.signals import TrainingInterrupted


def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_saved(tiny_config, tmp_path):
    result = train(tiny_config(2, "train.ema_decay=0.9"), tmp_path / "run", progress=False, log=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    raw = state["model"]
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) == result.history[-1]["step"]  # one update per step
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert saved.keys() == raw.keys()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)  # the saved model is the EMA
    assert not all(torch.equal(saved[k], raw[k]) for k in saved)  # and not the raw weights
    # sampling from the saved run uses those weights
    loaded = VAE.from_pretrained(tmp_path / "run")
    assert all(torch.equal(v, ema[k]) for k, v in loaded.state_dict().items())
    assert all(torch.equal(v, ema[k]) for k, v in result.model.state_dict().items())  # the API's too
    assert loaded.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 1, 12, 12)


def test_each_epoch_logs_active_units_per_dim_kl_and_cumulative_minutes(tiny_config, tmp_path):
    result = train(tiny_config(2), tmp_path / "run", progress=False, log=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.history
    for row in rows:
        assert 0 <= row["val_active_units"] <= 4 and len(row["val_kl_per_dim"]) == 4
        assert sum(row["val_kl_per_dim"]) == pytest.approx(row["val_kl"], rel=0.05)
    assert 0 < rows[0]["train_minutes"] < rows[1]["train_minutes"]
    assert rows[1]["train_minutes"] * 60 == pytest.approx(sum(r["train_seconds"] for r in rows))


def test_a_time_budget_stops_cleanly_with_a_saved_model_and_is_kept_on_resume(tiny_config, tmp_path):
    cfg = tiny_config(50, "train.max_minutes=0.00001")  # 0.6 ms: the first step uses it up
    result = train(cfg, tmp_path / "run", progress=False, log=False)
    assert [(r["epoch"], r["step"]) for r in result.history] == [(1, 1)]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_seconds"] >= 0.0006
    again = train(cfg, tmp_path / "run", resume=True, progress=False, log=False)
    assert len(again.history) == 1  # the budget is spent: nothing more to do


ALL_ON = [
    "data.binarize=dynamic",
    "train.kl_anneal=cyclical",
    "train.kl_anneal_steps=4",
    "objective.free_bits=0.05",
    "train.grad_clip=2.0",
    "train.skip_threshold=1e6",
    "train.lr_warmup_steps=3",
    "train.lr_schedule=cosine",
    "train.lr_min_ratio=0.1",
    "train.ema_decay=0.9",
]


def test_an_interrupted_run_with_every_stabiliser_resumes_exactly(
    tiny_config, tmp_path, monkeypatch, stop_at_step
):
    full = train(tiny_config(2, *ALL_ON), tmp_path / "full", progress=False, log=False)

    stop_at_step(4)  # as if SIGTERM arrived during step 4 (of 6 in epoch 1)
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(2, *ALL_ON), tmp_path / "cut", progress=False, log=False)
    monkeypatch.undo()
    resumed = train(tiny_config(2, *ALL_ON), tmp_path / "cut", resume=True, progress=False, log=False)
    a, b = (load_checkpoint(r.run_dir / "checkpoint.pt") for r in (full, resumed))
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["scheduler"] == b["scheduler"]
    keys = ["train_elbo", "val_elbo", "lr", "kl_weight", "clipped_updates", "grad_norm_mean"]
    keys += ["val_kl_per_dim", "val_active_units"]
    for x, y in zip(full.history, resumed.history, strict=True):
        assert {k: x[k] for k in keys} == {k: y[k] for k in keys}
    assert full.history[0]["clipped_updates"] > 0  # the clipping really acted


def test_the_ema_decay_warms_up_so_early_averages_forget_the_initial_weights():
    from vaelab.training.ema import ema_decay_at, warmup_ema_multi_avg_fn

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10) == pytest.approx(11 / 20)
    assert ema_decay_at(0.999, 10**6) == 0.999  # the configured decay once warmed up
    ema, w = [torch.zeros(3)], [torch.ones(3)]
    update = warmup_ema_multi_avg_fn(0.999)
    update(ema, w, torch.tensor(1))  # second update: d = 2 / 11
    assert torch.allclose(ema[0], torch.full((3,), 9 / 11))
