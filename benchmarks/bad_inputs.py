"""Hand vaelab every kind of bad input through its command line and record what it says.

Each case must end in exit status 2 with one error line naming the problem (no traceback), and must
leave earlier work intact. Prints JSON (the table in docs/reliability.md comes from it).

    python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import pickle
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

from vaelab.cli import main

TINY = ["--epochs", "1", "--no-progress", "--device", "cpu", "--set", "model.encoder.hidden_dims=[16]",
        "--set", "model.decoder.hidden_dims=[16]"]  # fmt: skip


def run(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    lines = err.getvalue().strip().splitlines()
    first = next((i for i, x in enumerate(lines) if "error:" in x), max(0, len(lines) - 2))
    return code, " ".join(x.strip() for x in lines[first : first + 2])[:400]


def blobs(path: Path, **override: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"images": (rng.random((60, 8, 8)) * 255).astype(np.uint8), "labels": np.arange(60) % 3}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def cases(tmp: Path) -> list[dict]:
    out = []

    def record(name: str, args: list[str], check=None) -> None:
        code, message = run(args)
        row = {"input": name, "exit_status": code, "message": message}
        if check is not None:
            row["nothing_lost"] = bool(check())
        out.append(row)

    good = blobs(tmp / "good.npz")
    run_dir = tmp / "run"
    assert main(["train", "--dataset", str(good), "--run-dir", str(run_dir), *TINY]) == 0
    model_dir = run_dir / "model"

    marker = tmp / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = run_dir / "checkpoint.pt"
    saved = ckpt.read_bytes()
    ckpt.write_bytes(pickle.dumps({"version": 1, "model": Payload()}))
    record("checkpoint carrying a pickle payload (would create a file)", ["train", "--resume", str(run_dir)],
           lambda: not marker.exists())  # fmt: skip
    ckpt.write_bytes(saved[: len(saved) // 2])
    record("truncated checkpoint", ["train", "--resume", str(run_dir)])
    ckpt.write_bytes(saved)

    weights = model_dir / "model.safetensors"
    w = weights.read_bytes()
    weights.write_bytes(w[: len(w) // 2])
    record("truncated safetensors weights", ["sample", str(model_dir), "--out", str(tmp / "s.npz")])
    flipped = bytearray(w)
    flipped[-3] ^= 0x10
    weights.write_bytes(bytes(flipped))
    record(
        "altered safetensors weights (one bit flipped)",
        ["sample", str(model_dir), "--out", str(tmp / "s.npz")],
    )
    weights.write_bytes(w)
    cfg = model_dir / "config.json"
    c = cfg.read_text()
    cfg.write_text(c.replace('"latent_dim": 32', '"latent_dim": "big"'))
    record("model config.json with a wrong type", ["sample", str(model_dir), "--out", str(tmp / "s.npz")])
    cfg.write_text(c)

    record("config value of the wrong type", ["train", "--dataset", str(good), "--set", "train.epochs=many",
                                              "--run-dir", str(tmp / "x1")])  # fmt: skip
    record("config value out of range", ["train", "--dataset", str(good), "--set", "train.lr=-0.1",
                                         "--run-dir", str(tmp / "x2")])  # fmt: skip
    (tmp / "typo.yaml").write_text("train:\n  epoch: 3\n")
    record(
        "config with an unknown key",
        ["train", "--config", str(tmp / "typo.yaml"), "--run-dir", str(tmp / "x3")],
    )
    (tmp / "evil.yaml").write_text("!!python/object/apply:os.system ['touch pwned']\n")
    record(
        "YAML with a Python tag", ["train", "--config", str(tmp / "evil.yaml"), "--run-dir", str(tmp / "x4")]
    )

    folder = tmp / "images" / "a"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    args = ["train", "--dataset", str(tmp / "images"), "--run-dir", str(tmp / "x5"), *TINY]
    record("image folder with a corrupt file (on_error=raise)", args)

    for name, arrays in {
        "npz with NaN": {"images": np.full((10, 8, 8), np.nan, np.float32)},
        "npz of the wrong dtype": {"images": np.zeros((10, 8, 8), np.complex64)},
        "npz of the wrong shape": {"images": np.zeros((10, 8), np.uint8)},
    }.items():
        bad = blobs(tmp / f"{name.replace(' ', '_')}.npz", **arrays)
        record(name, ["train", "--dataset", str(bad), "--run-dir", str(tmp / name.replace(" ", "_")), *TINY])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("torch.save", full_disk):
        record(
            "full disk while saving a checkpoint",
            ["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"],
            lambda: main(["sample", str(run_dir), "--out", str(tmp / "after.npz")]) == 0,
        )
    return out


def main_() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = cases(Path(tmp))
    print(json.dumps({"benchmark": "bad_inputs", "cases": rows}, indent=2))
    sys.exit(0 if all(r["exit_status"] == 2 and r.get("nothing_lost", True) for r in rows) else 1)


if __name__ == "__main__":
    main_()
