"""User errors against bugs at the command line: a bad input is one line naming the problem (exit
status 2); anything else escapes with its traceback, so a bug never passes for the user's mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.cli import main, one_line
from vaelab.errors import UserError


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An untrained saved model for the 12x12 blobs: enough for every check, and instant."""
    from vaelab.models import VAE, ModelConfig

    cfg = ModelConfig.model_validate({"image_shape": (1, 12, 12), "latent_dim": 2})
    torch.manual_seed(0)
    return VAE(cfg).save_pretrained(tmp_path / "model")


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI on ``argv``, check it failed as a user error, and return its one line."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vaelab {argv[0]}: error: ")
    return lines[0]


def bad_inputs(tmp: Path, model: Path, npz: Path) -> list[tuple[list[str], str]]:
    """(argv, what its error line must say): at least one for every command."""
    m, out = str(model), str(tmp / "out")
    unlabelled = tmp / "unlabelled.npz"
    np.savez(unlabelled, images=np.load(npz)["images"])
    data = ["--dataset", str(npz)]
    return [
        (["train", "--resume", str(tmp / "nowhere")], "is not a vaelab run directory (no config.yaml)"),
        (["train", "--dataset", "mnits"], "dataset 'mnits' is neither a dataset name"),
        (["train", "--set", "train.lr=-3"], "train.lr: Input should be greater than 0"),
        (["sample", m, "--out", out + ".png"], "--out must end in .npz; got"),
        (["sample", m, "-n", "0", "--out", out + ".npz"], "-n must be at least 1; got 0"),
        (["sample", m, "--prior", "gmm", "--out", out + ".npz"], "run 'vaelab fit-prior"),
        (["sample", str(tmp / "none"), "--out", out + ".npz"], "does not exist"),
        (["reconstruct", m, "--dataset", "digits", "--grid", out + ".png"], "the model expects (1, 12, 12)"),
        (["fit-prior", m, *data, "--components", "0"], "components: Input should be greater than or equal"),
        (["fit-prior", m, *data, "--prior", "flow", "--set", "stpes=2"], "stpes: unknown option"),
        (["fit-prior", m, *data, "--prior", "flow", "--components", "3"], "--components is a gmm option"),
        (["sample", m, "--steps", "5", "--out", out + ".npz"], "--steps is for --prior diffusion"),
        (["sample", m, "--prior", "flow", "--out", out + ".npz"], "--prior flow' first"),
        (["interpolate", m, *data, "--out", out + ".jpg"], "--out must end in .png or .gif; got"),
        (["interpolate", m, *data, "--from", "9999", "--out", out + ".png"], "--from 9999 is out of range"),
        (["traverse", m, *data, "--steps", "0", "--out", out + ".png"], "--steps must be at least 1"),
        (["attribute", m, *data, "--from-class", "9", "--to-class", "0", "--out", out + ".png"],
         "no images labelled 9"),
        (["attribute", m, "--dataset", str(unlabelled), "--from-class", "0", "--to-class", "1",
          "--out", out + ".png"], "has no labels"),
        (["evaluate", m, "--iw-samples", "0"], "--iw-samples must be at least 1; got 0"),
        (["evaluate", m, "--inception-weights", str(tmp / "none.pth")], "none.pth does not exist"),
        (["evaluate", m, *data, "--ood", "ood:nope", "--ood-only"], "unknown OOD set 'nope'"),
        (["compare", str(tmp / "nowhere")], "no evaluation report at"),
        (["score", m, str(tmp / "missing"), *data], "is not an existing folder, image, .npz or IDX file"),
        (["score", m, "ood:constant", *data, "--score", "typo"], "unknown score 'typo'"),
        (["score", m, "ood:constant", *data, "--out", out + ".txt"], "--out must end in .csv or .jsonl"),
        (["score", m, *data, "--calibrate", "--fpr", "0"], "--fpr must lie strictly between 0 and 1"),
        (["serve", m, "--port", "70000"], "--port must be in 1..65535, got 70000"),
        (["export", m, "--out", out, "--atol", "0"], "--atol must be positive"),
        (["data", "pack", str(tmp / "nowhere"), "--out", out], "is neither a dataset name"),
        (["data", "pack", "digits", "--out", out, "--image-size", "2"], "data.image_size: Input should be"),
    ]  # fmt: skip


def test_every_command_answers_a_bad_input_with_one_line(model_dir, blobs_npz, tmp_path, capsys):
    commands = set()
    for argv, expected in bad_inputs(tmp_path, model_dir, blobs_npz):
        line = one_error_line(argv, capsys)
        assert expected in line, (argv, line)
        commands.add(argv[0])
    from vaelab.cli import build_parser

    registered = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert commands == set(registered), "a command without a bad-input case"


def test_an_output_that_cannot_be_written_is_named(model_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    line = one_error_line(["sample", str(model_dir), "--out", str(blocker / "s.npz")], capsys)
    assert f"cannot write --out {blocker / 's.npz'}" in line


def test_a_missing_device_or_extra_is_the_installation_s_state(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = one_error_line(
        ["sample", str(model_dir), "--device", "cuda", "--out", str(tmp_path / "s.npz")], capsys
    )
    assert "--device cuda was asked for, but torch sees no CUDA GPU" in line
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what an absent package looks like to import
    line = one_error_line(["export", str(model_dir), "--out", str(tmp_path / "onnx")], capsys)
    assert "pip install 'vaelab[export]'" in line


def test_a_config_error_with_several_fields_is_still_one_line(capsys):
    line = one_error_line(["train", "--set", "train.lr=-3", "--set", "train.epochs=many"], capsys)
    assert "train.epochs: Input should be a valid integer" in line and "; train.lr: Input should be" in line
    assert (
        one_line("invalid configuration (x):\n  a: bad\n  b: worse")
        == "invalid configuration (x): a: bad; b: worse"
    )


def test_vaelab_debug_shows_a_user_error_s_traceback(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DEBUG", "1")
    with pytest.raises(UserError, match=r"--out must end in \.npz"):
        main(["sample", str(model_dir), "--out", str(tmp_path / "s.png")])


BUGS = [  # (something deep in vaelab, failing as a bug would; its error; a command that reaches it)
    ("models.vae.VAE.decode_sample", ValueError, "sample {model} --out {tmp}/s.npz"),
    ("models.vae.VAE.reconstruct", RuntimeError, "reconstruct {model} {data} --grid {tmp}/r.png"),
    ("generation.latent.interpolate_latents", OSError, "interpolate {model} {data} --out {tmp}/i.png"),
    # inside the writing of --grid, but about no path: still a bug
    ("io.images.make_grid", FileNotFoundError, "sample {model} --out {tmp}/s.npz --grid {tmp}/g.png"),
]


@pytest.mark.parametrize(("target", "error", "command"), BUGS)
def test_a_bug_deep_inside_is_not_swallowed(
    model_dir, blobs_npz, tmp_path, monkeypatch, target, error, command
):
    def simulated_bug(*args: object, **kwargs: object) -> None:
        raise error("simulated bug")

    monkeypatch.setattr(f"vaelab.{target}", simulated_bug)
    argv = command.format(model=model_dir, tmp=tmp_path, data=f"--dataset={blobs_npz}").split()
    with pytest.raises(error, match="simulated bug"):
        main(argv)


def test_a_bug_shows_its_traceback_and_exit_status_1(model_dir, blobs_npz, tmp_path):
    # The console script's view: an exception that is not a user error reaches the interpreter.
    script = (
        "import sys, vaelab.data.registry as r\n"
        "def bug(*a, **k): raise ValueError('simulated bug')\n"
        "r.DATASETS['npz'] = bug\n"
        "from vaelab.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["reconstruct", str(model_dir), "--dataset", str(blobs_npz), "--grid", str(tmp_path / "r.png")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ValueError: simulated bug" in done.stderr
    assert "error: simulated bug" not in done.stderr
