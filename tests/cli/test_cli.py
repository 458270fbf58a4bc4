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


def test_train_names_the_best_validation_epoch_when_it_was_not_the_last(blobs_npz, tmp_path, capsys):
    import json

    run = tmp_path / "run"
    args = ["train", "--dataset", str(blobs_npz), "--epochs", "5", "--run-dir", str(run), "--no-progress"]
    assert main([*args, *TINY, "--set", "train.lr=0.05", "--set", "train.batch_size=32"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(rows, key=lambda r: r["val_neg_elbo"])
    said = capsys.readouterr().err
    named = f"the best validation epoch was {best['epoch']} ({best['val_neg_elbo']:.2f} nats)"
    assert (named in said and str(run / "model-best") in said) == (best["epoch"] != rows[-1]["epoch"])
    assert (run / "model-best" / "model.safetensors").is_file()
