import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from vaelab.config import load_config
from vaelab.training import CheckpointError, load_checkpoint, train


def test_run_directory_holds_everything(tiny_config, tmp_path):
    result = train(tiny_config(2, "data.binarize=dynamic"), tmp_path / "run", progress=False)
    run = result.run_dir
    for name in [
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "loss_curve.png",
        "model/config.json",
        "model/model.safetensors",
        "samples/epoch_001.png",
        "samples/epoch_002.png",
        "reconstructions/epoch_002.png",
    ]:
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["val_neg_elbo"] > 0 and r["train_kl"] >= 0 for r in rows)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["environment"]["torch"] == torch.__version__
    assert meta["train_images"] + meta["val_images"] == 200  # 240 blobs minus the held-out test 1/6
    saved = load_config(run / "config.yaml")
    assert saved.model.image_shape == (1, 12, 12)


def test_on_epoch_end_sees_each_epoch_row_after_its_files(tiny_config, tmp_path):
    seen = []

    def hook(row):
        logged = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        seen.append((row["epoch"], len(logged), "val_neg_elbo" in row))

    result = train(tiny_config(2), tmp_path / "run", progress=False, log=False, on_epoch_end=hook)
    assert seen == [(1, 1, True), (2, 2, True)]  # once per epoch, after metrics.jsonl has the row
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_the_logged_peak_is_the_best_measured_so_far(tiny_config, tmp_path, monkeypatch):
    """A peak timed at a slow moment of a shared machine would overstate every later fraction of
    peak; long epochs measure it again and the log keeps the best."""
    import vaelab.perf
    import vaelab.training.epoch_report as epoch_report

    later = iter([3e9, 1e9, 5e9])
    monkeypatch.setattr(vaelab.perf, "matmul_peak", lambda *a, **k: 2e9)  # the run's first measurement
    monkeypatch.setattr(epoch_report, "matmul_peak", lambda *a, **k: next(later))
    monkeypatch.setattr(epoch_report, "PEAK_REFRESH_SECONDS", 0.0)
    result = train(tiny_config(3), tmp_path / "run", progress=False, log=False)
    assert [r["peak_gflop_per_s"] for r in result.history] == [3.0, 3.0, 5.0]
    for r in result.history:
        assert r["peak_fraction"] == pytest.approx(r["gflop_per_s"] / r["peak_gflop_per_s"])


def test_model_best_holds_the_epoch_with_the_lowest_validation_elbo(tiny_config, tmp_path):
    from vaelab.models import VAE

    # At lr 0.05 the tiny model's validation ELBO goes up and down (here: best at epoch 4 of 5).
    run = train(tiny_config(5, "train.lr=0.05"), tmp_path / "run", progress=False, log=False).run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(rows, key=lambda r: r["val_neg_elbo"])
    saved = json.loads((run / "model-best" / "config.json").read_text())
    assert saved["epoch"] == best["epoch"] and saved["val_neg_elbo"] == pytest.approx(best["val_neg_elbo"])
    weights = load_file(run / "model-best" / "model.safetensors")
    last = load_file(run / "model" / "model.safetensors")
    same = all(torch.equal(weights[k], last[k]) for k in last)
    assert same == (best["epoch"] == rows[-1]["epoch"])  # model/ is the last epoch's, model-best the best's
    VAE.from_pretrained(run / "model-best")  # loads on its own
    off = train(tiny_config(2, "train.keep_best=false"), tmp_path / "off", progress=False, log=False).run_dir
    assert not (off / "model-best").exists()


def test_the_kept_best_is_beaten_only_by_a_lower_finite_validation_elbo(tmp_path):
    from vaelab.training.epoch_report import EpochReport

    report = EpochReport.__new__(EpochReport)  # only is_best's inputs: the run directory, the validation set
    report.run_dir, report.val_set = tmp_path, [0]
    assert report.is_best({"epoch": 1, "val_neg_elbo": 1e9})  # nothing kept yet: the first epoch is the best
    (tmp_path / "model-best").mkdir()
    (tmp_path / "model-best" / "config.json").write_text(json.dumps({"epoch": 3, "val_neg_elbo": 90.0}))
    assert not report.is_best({"epoch": 5, "val_neg_elbo": 95.0})  # an earlier launch's 90 stays the best
    assert report.is_best({"epoch": 5, "val_neg_elbo": 89.5})
    assert not report.is_best({"epoch": 5, "val_neg_elbo": float("nan")})
    assert report.is_best({"epoch": 3, "val_neg_elbo": 95.0})  # kept by an epoch a crash lost: replaced
    report.val_set = []
    assert not report.is_best({"epoch": 5, "val_neg_elbo": 1.0})  # no validation set: nothing to rank by


def test_without_a_validation_set_the_saved_config_stays_strict_json(tiny_config, tmp_path):
    def refuse(name):
        raise ValueError(f"{name} in config.json")

    run = train(tiny_config(1, "data.val_fraction=0"), tmp_path / "run", progress=False, log=False).run_dir
    saved = json.loads((run / "model" / "config.json").read_text(), parse_constant=refuse)
    assert saved["val_neg_elbo"] is None and not (run / "model-best").exists()


def test_snapshots_keep_the_model_of_every_nth_epoch_with_its_minutes(tiny_config, tmp_path):
    from vaelab.models import VAE

    run = train(tiny_config(5, "train.snapshot_every=2"), tmp_path / "run", progress=False).run_dir
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snaps == ["epoch-0002", "epoch-0004", "epoch-0005"]  # every 2nd epoch, and the last
    minutes = []
    for name in snaps:
        saved = json.loads((run / "snapshots" / name / "config.json").read_text())
        assert saved["epoch"] == int(name[-4:]) and saved["data"]["name"] == "npz"
        minutes.append(saved["train_minutes"])
        VAE.from_pretrained(run / "snapshots" / name)  # each loads on its own
    assert 0 < minutes[0] < minutes[1] < minutes[2]
    # The last snapshot is the saved model itself.
    last = load_file(run / "snapshots" / "epoch-0005" / "model.safetensors")
    final = load_file(run / "model" / "model.safetensors")
    assert last.keys() == final.keys() and all(torch.equal(last[k], final[k]) for k in last)


def test_training_reduces_the_loss(tiny_config, tmp_path):
    result = train(tiny_config(6, "train.lr=3e-3"), tmp_path / "run", progress=False)
    losses = [r["val_neg_elbo"] for r in result.history]
    assert losses[-1] < losses[0] - 5


@pytest.mark.parametrize("extra", [[], ["train.ema_decay=0.9"]], ids=["raw", "ema"])
def test_resume_equals_uninterrupted_run(tiny_config, tmp_path, extra):
    full = train(tiny_config(2, "data.binarize=dynamic", *extra), tmp_path / "full", progress=False)
    train(tiny_config(1, "data.binarize=dynamic", *extra), tmp_path / "part", progress=False)
    resumed = train(
        tiny_config(2, "data.binarize=dynamic", *extra), tmp_path / "part", resume=True, progress=False
    )
    a = load_file(str(full.run_dir / "model" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[-1]["val_elbo"] == full.history[-1]["val_elbo"]


def test_existing_run_is_not_overwritten(tiny_config, tmp_path):
    train(tiny_config(1), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(1), tmp_path / "run", progress=False)


def test_checkpoint_with_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "checkpoint.pt"
    with open(path, "wb") as f:
        pickle.dump({"version": 1, "model": Payload()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_reported(tiny_config, tmp_path):
    train(tiny_config(1), tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(tiny_config(2), tmp_path / "run", resume=True, progress=False)


def test_compiled_and_bf16_paths_train_like_the_reference(tiny_config, tmp_path):
    """train.compile (inductor) and train.precision=bf16 change speed, not the model: after one epoch
    from the same seed, the validation ELBO agrees with the eager fp32 run (compile within float
    rounding; bf16 within 1%)."""
    ref = train(tiny_config(1), tmp_path / "ref", progress=False, log=False).history[-1]
    compiled = train(tiny_config(1, "train.compile=true"), tmp_path / "c", progress=False, log=False)
    bf16 = train(tiny_config(1, "train.precision=bf16"), tmp_path / "b", progress=False, log=False)
    assert compiled.history[-1]["val_elbo"] == pytest.approx(ref["val_elbo"], rel=1e-3)
    assert bf16.history[-1]["val_elbo"] == pytest.approx(ref["val_elbo"], rel=1e-2)
