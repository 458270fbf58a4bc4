"""A long IW estimate journals its batches: stopped by a crash, it resumes where it stopped and ends
with the numbers of one uninterrupted run; another estimate never reads its journal."""

from __future__ import annotations

import json

import pytest
import torch

from vaelab.errors import UsageError
from vaelab.evaluation import EvaluationOptions, dataset_likelihood, evaluate_log_likelihood, evaluate_model

from .helpers import random_images_vae


def _crash_at(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make batch ``number`` raise, as a kill or a crash in the middle of the estimate would."""
    real = dataset_likelihood.estimate_batch

    def flaky(model, part, opts, n):
        if n == number:
            raise KeyboardInterrupt
        return real(model, part, opts, n)

    monkeypatch.setattr(dataset_likelihood, "estimate_batch", flaky)


def test_an_interrupted_estimate_resumes_to_the_numbers_of_one_run(tmp_path, monkeypatch, capsys):
    model, ds = random_images_vae(14)
    whole = evaluate_log_likelihood(model, ds, iw_samples=30, seed=4, batch_size=4)
    with monkeypatch.context() as m:
        _crash_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            evaluate_log_likelihood(model, ds, iw_samples=30, seed=4, batch_size=4, journal_dir=tmp_path)
    (journal,) = tmp_path.glob("iw-journal-*.jsonl")
    assert len(journal.read_text().splitlines()) == 3  # the header and batches 0 and 1
    resumed = evaluate_log_likelihood(
        model, ds, iw_samples=30, seed=4, batch_size=4, journal_dir=tmp_path, progress=True
    )
    assert resumed.resumed_batches == 2 and resumed.journal == journal
    assert f"resuming {journal}: 2 of 4 batches already done" in capsys.readouterr().err
    for k in whole.by_k:
        assert torch.equal(resumed.by_k[k], whole.by_k[k]), k  # bit for bit
    assert resumed.seconds > 0


def test_a_line_cut_short_by_a_crash_is_run_again(tmp_path):
    model, ds = random_images_vae(8)
    first = evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, batch_size=4, journal_dir=tmp_path)
    (journal,) = tmp_path.glob("iw-journal-*.jsonl")
    header, batch0, batch1 = journal.read_text().splitlines()
    journal.write_text(f"{header}\n{batch0}\n{batch1[: len(batch1) // 2]}")
    again = evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, batch_size=4, journal_dir=tmp_path)
    assert again.resumed_batches == 1
    assert torch.equal(again.log_px, first.log_px)


def test_another_k_seed_or_model_writes_its_own_journal(tmp_path):
    model, ds = random_images_vae(6)
    evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, journal_dir=tmp_path)
    other_k = evaluate_log_likelihood(model, ds, iw_samples=11, seed=1, journal_dir=tmp_path)
    other_seed = evaluate_log_likelihood(model, ds, iw_samples=10, seed=2, journal_dir=tmp_path)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    other_weights = evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, journal_dir=tmp_path)
    assert [r.resumed_batches for r in (other_k, other_seed, other_weights)] == [0, 0, 0]
    assert len(list(tmp_path.glob("iw-journal-*.jsonl"))) == 4


def test_a_journal_of_another_estimate_under_this_name_is_refused(tmp_path):
    model, ds = random_images_vae(6)
    evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, journal_dir=tmp_path)
    (journal,) = tmp_path.glob("iw-journal-*.jsonl")
    lines = journal.read_text().splitlines()
    header = json.loads(lines[0])
    header["key"]["iw_samples"] = 99
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(UsageError, match="not this evaluation's journal"):
        evaluate_log_likelihood(model, ds, iw_samples=10, seed=1, journal_dir=tmp_path)


def test_a_finished_evaluation_removes_its_journal_and_says_what_it_resumed(tmp_path):
    model, ds = random_images_vae(9)
    opts = EvaluationOptions(iw_samples=5, batch_size=4, sample_quality=False, journal_dir=str(tmp_path))
    report = evaluate_model(model, ds, options=opts)
    assert report["log_likelihood"]["resumed_batches"] == 0
    assert "journal" not in report["log_likelihood"]
    assert not list(tmp_path.glob("iw-journal-*"))
