"""Process-level concerns: the device, seeds, and the machine and versions a run records.

What the machine can do fast (its matmul features, its measured peak) is ``perf``'s concern; the
``environment`` record here lists the CPU features ``perf.cpu_features`` finds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

from vaelab import __version__
from vaelab.errors import SetupError
from vaelab.perf import cpu_features


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SetupError(
            "--device cuda was asked for, but torch sees no CUDA GPU (use --device auto or cpu)."
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SetupError("--device mps was asked for, but this machine has no Apple MPS device.")
    return torch.device(name)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (e.g. the run seed and the epoch), the same on every machine."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """torch's random state forked on the CPU and, for a CUDA ``device``, on that GPU: draws seeded
    inside come out the same whatever ran before, and the caller's stream is left as it was."""
    gpus = []
    if device.type == "cuda":
        gpus = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=gpus):
        yield


def cpu_name() -> str:
    """The CPU model as the OS reports it (recorded beside every timing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (VmHWM). Unlike ``getrusage``'s ru_maxrss, which a
    child started by fork + exec inherits from its parent, VmHWM restarts at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, object]:
    """Versions and machine facts recorded in every run directory and benchmark."""
    return {
        "vaelab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_flags": sorted(name for name, present in cpu_features().items() if present),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
