"""The journal of a long importance-weighted estimate: each finished batch appended to a file as it
finishes, so that an evaluation stopped by a crash, a kill or a machine's time limit resumes where it
stopped instead of starting over.

Why it can: every batch draws its latents from the evaluation's seed and the batch's number
(``dataset_likelihood.estimate_batch``), so a batch journalled by one process and a batch computed
now add up to the very numbers of one uninterrupted run. A journal is named by a hash of everything
that fixes those numbers (the weights, the images, K, the seed, the batch size, the memory budget,
the precision), so another model, other images or another K never reads it: they write their own.
Compilation and worker processes change no number and are not part of the key.

Format: JSON lines. The first line is the header (format, version, key); each further line is one
batch: its number, the seconds it took, and its per-image estimates at every reported K as JSON
floats (which read back to the same float64 bits). A line cut short by a crash is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from vaelab.data import ImageDataset
from vaelab.errors import UsageError
from vaelab.models.saving import tensors_digest

FORMAT = "vaelab-iw-journal"
VERSION = 1


def journal_key(model: torch.nn.Module, images: ImageDataset, settings: dict[str, Any]) -> dict[str, Any]:
    """What fixes the estimate's numbers: a digest of the weights and of the images (and labels),
    and ``settings`` (K, seed, batch size, memory budget, precision)."""
    data = hashlib.sha256(images.images.contiguous().numpy().tobytes())
    if images.labels is not None:
        data.update(images.labels.contiguous().numpy().tobytes())
    return {
        "weights": tensors_digest(model.state_dict()),
        "images": data.hexdigest(),
        "count": len(images),
        **settings,
    }


class Journal:
    """The batches of one estimate found on disk (``done``, ``seconds``) and the appending of new ones."""

    def __init__(self, directory: str | Path, key: dict[str, Any]) -> None:
        """Open (or start) the journal for ``key`` in ``directory``, reading the batches it holds."""
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(directory) / f"iw-journal-{name}.jsonl"
        self.done: dict[int, dict[int, torch.Tensor]] = {}
        self.seconds = 0.0  # the journalled batches' time
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        header = _parse(lines[0]) if lines else None
        if header is None:  # none yet, or its header was cut short: nothing in it to keep
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("")
                self._append({"format": FORMAT, "version": VERSION, "key": key})
            except OSError as exc:
                raise UsageError(f"cannot write the evaluation's journal {self.path}: {exc}") from None
            return
        if header.get("format") != FORMAT or header.get("version") != VERSION or header.get("key") != key:
            raise UsageError(
                f"{self.path} is not this evaluation's journal (another format or key): move it away"
            )
        self._read(lines[1:])

    def _read(self, lines: list[str]) -> None:
        for line in lines:
            try:
                entry = json.loads(line)
                values = {int(k): torch.tensor(v, dtype=torch.float64) for k, v in entry["log_px"].items()}
                number, seconds = int(entry["batch"]), float(entry["seconds"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a crash: that batch runs again
            if number not in self.done:
                self.done[number] = values
                self.seconds += seconds

    def record(self, number: int, values: dict[int, torch.Tensor], seconds: float) -> None:
        """Append one finished batch (flushed to disk before returning)."""
        self.done[number] = values
        self.seconds += seconds
        log_px = {str(k): v.double().tolist() for k, v in values.items()}
        self._append({"batch": number, "seconds": seconds, "log_px": log_px})

    def _append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
