import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

TINY = [
    "--set",
    "model.encoder.hidden_dims=[32]",
    "--set",
    "model.decoder.hidden_dims=[32]",
    "--set",
    "model.latent_dim=4",
    "--set",
    "train.grid_samples=16",
    "--device",
    "cpu",
]


@pytest.fixture
def trained_run(blobs_npz, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(blobs_npz),
                "--epochs",
                "2",
                "--run-dir",
                str(run),
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    return run


def test_train_sample_reconstruct(trained_run, tmp_path):
    out, grid = tmp_path / "s.npz", tmp_path / "s.png"
    assert (
        main(
            [
                "sample",
                str(trained_run),
                "-n",
                "10",
                "--seed",
                "3",
                "--out",
                str(out),
                "--grid",
                str(grid),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with np.load(out, allow_pickle=False) as z:
        images = z["images"]
    assert images.shape == (10, 12, 12, 1) and images.dtype == np.uint8
    assert Image.open(grid).size[0] > 12
    # same seed, same samples; a saved-model directory works as well as a run directory
    out2 = tmp_path / "s2.npz"
    assert (
        main(
            [
                "sample",
                str(trained_run / "model"),
                "-n",
                "10",
                "--seed",
                "3",
                "--out",
                str(out2),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.array_equal(np.load(out2)["images"], images)

    rgrid = tmp_path / "r.png"
    assert main(["reconstruct", str(trained_run), "--grid", str(rgrid), "-n", "8", "--device", "cpu"]) == 0
    assert Image.open(rgrid).size[1] > 2 * 12


def test_resume_from_cli(trained_run):
    assert main(["train", "--resume", str(trained_run), "--epochs", "3", "--no-progress"]) == 0
    assert (trained_run / "samples" / "epoch_003.png").is_file()


def test_user_errors_are_one_line(blobs_npz, tmp_path, capsys):
    assert (
        main(["train", "--dataset", str(blobs_npz), "--set", "train.lr=-3", "--run-dir", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err
    assert "train.lr" in err and "Traceback" not in err
    assert main(["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "o.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_help_explains_options():
    out = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ["--config", "--dataset", "--data-dir", "--epochs", "--run-dir", "--set", "--resume"]:
        assert option in out
    out = subprocess.run(
        [sys.executable, "-m", "vaelab", "sample", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ["--temperature", "--seed", "--out", "--grid"]:
        assert option in out


@pytest.mark.parametrize("kept_epoch, named", [(2, True), (3, False), (None, False)])
def test_train_names_the_kept_best_epoch_when_it_was_not_the_last(
    kept_epoch, named, blobs_npz, tmp_path, capsys, monkeypatch
):
    import json

    import vaelab.training.trainer as trainer

    run = tmp_path / "run"
    history = [{"epoch": e, "val_neg_elbo": v} for e, v in [(1, 99.0), (2, 90.0), (3, 95.0)]]
    if kept_epoch is not None:
        (run / "model-best").mkdir(parents=True)
        kept = {"epoch": kept_epoch, "val_neg_elbo": history[kept_epoch - 1]["val_neg_elbo"]}
        (run / "model-best" / "config.json").write_text(json.dumps(kept))
    monkeypatch.setattr(trainer, "train", lambda *a, **k: trainer.TrainResult(run, None, history))
    assert main(["train", "--dataset", str(blobs_npz), "--run-dir", str(run), "--no-progress", *TINY]) == 0
    said = capsys.readouterr().err
    assert ("the best validation epoch was 2 (90.00 nats)" in said) == named
    assert (str(run / "model-best") in said) == named
