"""Shared by the photos32 benchmarks: where the dataset is, and how a result is printed and saved.

Each benchmark prints one JSON object on stdout (its figures, the machine, the date and the command)
and can also write it to ``--out FILE``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from vaelab.runtime import environment

REPO = Path(__file__).resolve().parents[1]
RELATIVE = Path("photos32") / "photos32.npz"


def data_path(given: str | None) -> Path:
    """The photos32 .npz: ``--data``, else under ``$VAELAB_DATA`` (CI points it at the shared datasets
    folder), else ``../shared/datasets/photos32/photos32.npz`` beside the repository."""
    if given:
        path = Path(given)
    elif os.environ.get("VAELAB_DATA"):
        root = Path(os.environ["VAELAB_DATA"])
        path = root if root.suffix == ".npz" else root / RELATIVE
    else:
        path = REPO.parent / "shared" / "datasets" / RELATIVE
    if not path.is_file():
        raise SystemExit(f"photos32 not found at {path}: pass --data PATH or set $VAELAB_DATA")
    return path


def header(benchmark: str) -> dict[str, Any]:
    """What every report starts with: which benchmark, when, how it was called, on what machine."""
    return {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.executable).name, *sys.argv],
        "machine": environment(),
    }


def emit(report: dict[str, Any], out: str | None) -> None:
    """Print ``report`` as one JSON object and, with ``out``, also write it there."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
