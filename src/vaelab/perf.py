"""How fast the machine is and how much work a model does: FLOP counts and a measured matmul peak.

The training log reports achieved FLOP/s as a fraction of the machine's *measured* dense matmul peak
(not a datasheet number): a short timed matmul per dtype and device, cached for the process. Model
FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matmuls and
convolutions of the forward and (when the function calls ``backward``) the backward pass -- the
standard "model FLOPs" of MFU accounting (Chowdhery et al. 2022, appendix B); element-wise work is
not counted, so the fraction says how close the step is to being matmul-bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (multiply and add counted separately) that ``fn()`` runs in matmuls and convolutions.

    Call ``backward`` inside ``fn`` to include the backward pass (about twice the forward's FLOPs).
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# The CPU flags (as /proc/cpuinfo spells them) that decide which fp32 and bf16 matmul kernels run.
MATMUL_CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_features() -> dict[str, bool]:
    """Which fast matmul paths this CPU offers: AVX-512 BF16 (~2.5x fp32) and AMX (~6x fp32 in bf16),
    by the flags Linux reports in /proc/cpuinfo (all False where it cannot be read)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        pass
    return {name: name in flags for name in MATMUL_CPU_FEATURES}


@functools.lru_cache(maxsize=16)
def _matmul_peak(dtype_name: str, device: str, n: int, seconds: float, threads: int) -> float:
    dtype, dev = DTYPES[dtype_name], torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    sync = {"cuda": torch.cuda.synchronize, "mps": getattr(torch, "mps", None) and torch.mps.synchronize}.get(
        dev.type
    ) or (lambda: None)
    for _ in range(2):  # warm-up: thread pool, kernel selection, caches
        torch.mm(a, b)
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2.0 * n**3 / best


def matmul_peak(
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    n: int = 1024,
    seconds: float = 0.25,
    fresh: bool = False,
) -> float:
    """Measured FLOP/s of a square ``n`` x ``n`` matmul in ``precision`` on ``device`` (best of the
    repeats that fit in ``seconds``), cached per process, dtype, device and thread count; ``fresh``
    measures again (benchmarks on a machine whose speed drifts measure it beside each round)."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {sorted(DTYPES)}; got {precision!r}")
    measure = _matmul_peak.__wrapped__ if fresh else _matmul_peak
    with torch.no_grad():
        return measure(precision, str(device), n, seconds, torch.get_num_threads())


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (FTZ/DAZ): a denormal times 1 reads 0."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@functools.lru_cache(maxsize=1)
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's CPU kernels (and inductor's) run on, from this process's memory map;
    None off Linux or when none is loaded. Every common runtime (libgomp, LLVM libomp, Intel
    libiomp5) exports ``GOMP_parallel``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines()}
    torch_lib = str(Path(torch.__file__).parent)
    # torch's own runtime first: another library (scikit-learn, numpy builds) may bring its own copy
    for path in sorted(paths, key=lambda p: not p.startswith(torch_lib)):
        if any(name in Path(path).name for name in ("libgomp", "libiomp5", "libomp")):
            try:
                lib = ctypes.CDLL(path)  # already loaded: the same instance, no second runtime
                lib.GOMP_parallel  # noqa: B018 -- raises AttributeError when absent
            except (OSError, AttributeError):
                continue
            return lib
    return None


def _set_flush_denormal_everywhere(on: bool) -> bool:
    """``torch.set_flush_denormal(on)`` on this thread and on every thread of torch's OpenMP team.

    ``torch.set_flush_denormal`` sets the calling thread's MXCSR only; threads that OpenMP started
    earlier keep theirs, so an intra-op kernel split over two threads still ran at the slow thread's
    pace. Running the call once on each team thread (one ``GOMP_parallel`` region) reaches them.
    """
    ok = torch.set_flush_denormal(on)
    lib = _openmp_runtime()
    threads = torch.get_num_threads()
    if lib is None or threads <= 1 or not ok:
        return ok
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _data: torch.set_flush_denormal(on))
    lib.GOMP_parallel(callback, None, ctypes.c_uint(threads), ctypes.c_uint(0))
    return ok


@contextlib.contextmanager
def flush_denormals(on: bool = True) -> Iterator[bool]:
    """Flush denormal floats to zero (``on``) or keep them (``not on``) on the CPU inside the block,
    on every intra-op thread; the previous mode comes back afterwards. Yields whether the CPU
    supports the mode (x86 with SSE3: yes; elsewhere this is a no-op).

    Why it matters: Adam's first moment of a weight whose gradient is always zero (a weight reading
    MNIST's blank border, a dead unit) decays by beta1 = 0.9 per step into the denormal range
    (< 1.2e-38) after ~800 steps, and every multiply on a denormal takes a microcode assist: after 3
    epochs of the seed MLP, 350,000 of its 1.1M moments were denormal and the fused Adam update took
    7.3 ms instead of 0.8 (docs/performance.md). Flushed, they are zero -- the value they stand for.
    """
    before = denormals_flushed()
    ok = _set_flush_denormal_everywhere(on)
    try:
        yield ok
    finally:
        _set_flush_denormal_everywhere(before)
