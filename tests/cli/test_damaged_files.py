"""Damaged, hostile or malformed files at the command line (docs/reliability.md's table): each ends in
exit status 2 with one error line naming the problem, runs no code it was handed, and loses nothing —
the run it was pointed at still resumes and samples once the file is put back."""

from __future__ import annotations

import errno
import pickle
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

TINY = ["--epochs=1", "--no-progress", "--device=cpu", "--set=model.encoder.hidden_dims=[16]"]
TINY += ["--set=model.decoder.hidden_dims=[16]"]


def npz(path: Path, images: np.ndarray) -> Path:
    np.savez(path, images=images, labels=np.arange(len(images)) % 3)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of a tiny MLP on 60 random 8x8 images: checkpoint, weights and config to damage."""
    tmp = tmp_path_factory.mktemp("damaged")
    good = npz(tmp / "good.npz", (np.random.default_rng(0).random((60, 8, 8)) * 255).astype(np.uint8))
    assert main(["train", "--dataset", str(good), "--run-dir", str(tmp / "run"), *TINY]) == 0
    return tmp / "run"


def error_line(argv: list[object], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, check it failed as a user error (status 2, one error line after any progress lines,
    no traceback), and return that line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"vaelab {argv[0]}: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


class Payload:
    """Unpickling it would create the file ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (str(self.marker), "w"))


def half(b: bytes) -> bytes:
    return b[: len(b) // 2]


FILE_CASES: dict[str, tuple[str, Callable[[bytes], bytes], str, str]] = {
    # name: (file in the run, the damage, command, what the error line says)
    "truncated checkpoint": (
        "checkpoint.pt",
        half,
        "resume",
        "is corrupt or truncated",
    ),
    "truncated weights": (
        "model/model.safetensors",
        half,
        "sample",
        "could not be read as safetensors weights",
    ),
    "one bit flipped in the weights": (
        "model/model.safetensors",
        lambda b: b[:-3] + bytes([b[-3] ^ 0x10]) + b[-2:],
        "sample",
        "was altered or corrupted",
    ),
    "model config of a wrong type": (
        "model/config.json",
        lambda b: b.replace(b'"latent_dim": 32', b'"latent_dim": "big"'),
        "sample",
        "is not a valid vaelab model config",
    ),
}


def commands(run: Path) -> dict[str, list[object]]:
    return {
        "resume": ["train", "--resume", run, "--no-progress"],
        "sample": ["sample", run / "model", "--out", run.parent / "s.npz"],
    }


def still_works(run: Path) -> None:
    """Nothing lost: the run samples, and resumes for one more epoch."""
    assert main([str(a) for a in commands(run)["sample"]]) == 0
    assert main([str(a) for a in [*commands(run)["resume"], "--epochs=2"]]) == 0


@pytest.mark.parametrize("name", FILE_CASES)
def test_a_damaged_run_file_is_named_and_nothing_is_lost(run, name, capsys):
    relative, damage, command, says = FILE_CASES[name]
    path = run / relative
    saved = path.read_bytes()
    path.write_bytes(damage(saved))
    try:
        assert says in error_line(commands(run)[command], capsys)
    finally:
        path.write_bytes(saved)
    still_works(run)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_checkpoint_carrying_a_pickle_payload_runs_no_code(run, tmp_path, capsys):
    path, marker = run / "checkpoint.pt", tmp_path / "pwned"
    saved = path.read_bytes()
    path.write_bytes(pickle.dumps({"version": 1, "model": Payload(marker)}))
    try:
        line = error_line(commands(run)["resume"], capsys)
    finally:
        path.write_bytes(saved)
    assert "was refused: it holds objects other than tensors" in line
    assert not marker.exists()


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(run, capsys):
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch("torch.save", side_effect=full):
        line = error_line([*commands(run)["resume"], "--epochs=3"], capsys)
    assert "could not write checkpoint" in line and "The previous checkpoint is intact" in line
    still_works(run)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("unknown key", "train:\n  epoch: 3\n", "train.epoch: unknown key"),
        ("python tag", "!!python/object/apply:os.system ['touch pwned']\n", "is not valid YAML"),
        ("wrong type", "train:\n  epochs: many\n", "train.epochs: Input should be a valid integer"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path, name, text, says, capsys):
    (tmp_path / "c.yaml").write_text(text)
    line = error_line(["train", "--config", tmp_path / "c.yaml", "--run-dir", tmp_path / "r"], capsys)
    assert says in line
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("name", "images", "says"),
    [
        ("NaN", np.full((10, 8, 8), np.nan, np.float32), "NaN or infinite value(s)"),
        ("complex dtype", np.zeros((10, 8, 8), np.complex64), "has dtype complex64"),
        ("wrong shape", np.zeros((10, 8), np.uint8), "has shape (10, 8)"),
    ],
)
def test_bad_arrays_are_named(tmp_path, name, images, says, capsys):
    data = npz(tmp_path / "bad.npz", images)
    assert says in error_line(["train", "--dataset", data, "--run-dir", tmp_path / "r", *TINY], capsys)


def test_a_corrupt_image_in_a_folder_is_named(tmp_path, capsys):
    (tmp_path / "images" / "a").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(tmp_path / "images" / "a" / f"{i}.png")
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    argv = ["train", "--dataset", tmp_path / "images", "--run-dir", tmp_path / "r", *TINY]
    assert "could not be read: a/broken.png" in error_line(argv, capsys)
