"""KL annealing and learning-rate schedules give the documented value at given steps."""

import math

import pytest
import torch

from vaelab.config import ConfigError, load_config
from vaelab.training import TrainConfig, train
from vaelab.training.schedules import TrainingClock, build_lr_scheduler, kl_weight, lr_factor


def test_no_annealing_keeps_the_kl_weight_at_one():
    assert [kl_weight(s, TrainConfig()) for s in (0, 1, 10_000)] == [1.0, 1.0, 1.0]


def test_linear_warmup_rises_from_zero_to_one_over_n_steps():
    tc = TrainConfig(kl_anneal="linear", kl_anneal_steps=100)
    assert kl_weight(0, tc) == 0.0
    assert kl_weight(25, tc) == pytest.approx(0.25)
    assert kl_weight(99, tc) == pytest.approx(0.99)
    assert kl_weight(100, tc) == kl_weight(5000, tc) == 1.0


def test_cyclical_annealing_rises_during_the_first_ratio_of_each_cycle_then_holds():
    tc = TrainConfig(kl_anneal="cyclical", kl_anneal_steps=100, kl_anneal_ratio=0.5)
    assert kl_weight(0, tc) == 0.0
    assert kl_weight(25, tc) == pytest.approx(0.5)
    assert kl_weight(50, tc) == kl_weight(99, tc) == 1.0
    assert kl_weight(100, tc) == 0.0  # the second cycle starts again from 0
    assert kl_weight(125, tc) == pytest.approx(0.5)
    limited = TrainConfig(kl_anneal="cyclical", kl_anneal_steps=100, kl_cycles=2)
    assert kl_weight(199, limited) == 1.0 and kl_weight(200, limited) == 1.0  # done after 2 cycles
    assert kl_weight(110, limited) == pytest.approx(0.2)


def test_annealing_without_a_length_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"train.kl_anneal_steps.*needs kl_anneal_steps > 0"):
        load_config(overrides=["train.kl_anneal=cyclical"])


def test_lr_warmup_then_cosine_reaches_the_floor_at_the_planned_end():
    assert [lr_factor(s, 4, 100, "constant", 0.0) for s in (0, 3, 4, 99)] == [0.25, 1.0, 1.0, 1.0]
    assert lr_factor(4, 4, 104, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(54, 4, 104, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(104, 4, 104, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 4, 104, "cosine", 0.1) == pytest.approx(0.1)


def test_lambda_lr_scheduler_drives_the_optimiser_and_resumes_from_its_state():
    tc = TrainConfig(lr=0.01, lr_warmup_steps=2, lr_schedule="cosine", lr_decay_steps=10)
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.Adam(params, lr=tc.lr)
    sched = build_lr_scheduler(opt, tc, planned_steps=999)  # lr_decay_steps wins over the plan
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.01 * lr_factor(s, 2, 10, "cosine", 0.0) for s in range(6)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(0.005) and seen[-1] < seen[2]
    # a fresh optimiser + scheduler loaded from the saved states continue the same curve
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=tc.lr)
    sched2 = build_lr_scheduler(opt2, tc, planned_steps=999)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01 * lr_factor(6, 2, 10, "cosine", 0.0))
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 5 / 8)))


def test_a_cosine_over_minutes_follows_the_training_clock_and_ends_at_the_budget():
    tc = TrainConfig(lr=0.01, lr_schedule="cosine", lr_min_ratio=0.1, lr_decay_over="minutes", max_minutes=2)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=tc.lr)
    clock = TrainingClock()
    sched = build_lr_scheduler(opt, tc, planned_steps=10, clock=clock)
    for _ in range(30):  # steps past the planned length do not move it: only the clock does
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    for seconds, factor in [
        (30, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))),
        (60, 0.55),
        (120, 0.1),
        (900, 0.1),
    ]:
        clock.seconds = seconds
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * factor)


def test_a_cosine_over_minutes_without_a_budget_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"lr_decay_over='minutes' needs max_minutes > 0"):
        load_config(overrides=["train.lr_schedule=cosine", "train.lr_decay_over=minutes"])


def test_a_run_decaying_over_minutes_reaches_the_floor_when_its_budget_ends(tiny_config, tmp_path):
    extra = ["train.lr_schedule=cosine", "train.lr_decay_over=minutes", "train.lr_min_ratio=0.1"]
    cfg = tiny_config(10_000, "train.max_minutes=0.02", *extra)  # 1.2 s, many short epochs
    result = train(cfg, tmp_path / "run", progress=False, log=False)
    lrs = [row["lr"] for row in result.history]
    assert len(lrs) >= 2 and result.history[-1]["train_minutes"] >= 0.02
    assert lrs == sorted(lrs, reverse=True)  # falling with time, whatever the steps per epoch
    assert lrs[-1] == pytest.approx(cfg.train.lr * 0.1)  # at the floor when the budget is spent
