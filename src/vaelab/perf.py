"""How fast the machine is and how much work a model does: FLOP counts and a measured matmul peak.

The training log reports achieved FLOP/s as a fraction of the machine's *measured* dense matmul peak
(not a datasheet number): a short timed matmul per dtype and device, cached for the process. Model
FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matmuls and
convolutions of the forward and (when the function calls ``backward``) the backward pass -- the
standard "model FLOPs" of MFU accounting (Chowdhery et al. 2022, appendix B); element-wise work is
not counted, so the fraction says how close the step is to being matmul-bound.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaelab.runtime import cpu_flags

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (multiply and add counted separately) that ``fn()`` runs in matmuls and convolutions.

    Call ``backward`` inside ``fn`` to include the backward pass (about twice the forward's FLOPs).
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def cpu_features() -> dict[str, bool]:
    """Which fast matmul paths this CPU offers: AVX-512 BF16 (~2.5x fp32) and AMX (~6x fp32 in bf16)."""
    flags = set(cpu_flags())
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "amx_tile": "amx_tile" in flags,
    }


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
    precision: str = "fp32", device: str | torch.device = "cpu", n: int = 1024, seconds: float = 0.25
) -> float:
    """Measured FLOP/s of a square ``n`` x ``n`` matmul in ``precision`` on ``device`` (best of the
    repeats that fit in ``seconds``), cached per process, dtype, device and thread count."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {sorted(DTYPES)}; got {precision!r}")
    with torch.no_grad():
        return _matmul_peak(precision, str(device), n, seconds, torch.get_num_threads())
