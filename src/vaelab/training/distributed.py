"""torch.distributed for vaelab: one training loop for one process and for ``torchrun``.

``torchrun --nproc-per-node P -m vaelab train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; we then
join the process group (gloo on CPUs, NCCL on GPUs) and wrap the model in DistributedDataParallel.
Only rank 0 writes logs, images and checkpoints (nanoGPT's rule), and every rank takes its slice of
each *global* batch, so the same global batch size and seed give the same training curve whatever
the number of processes.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from vaelab.runtime import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown(ctx: DistContext, wait: bool = True) -> None:
    """Leave the process group (a no-op for a single process).

    ``wait`` first meets every rank at a barrier, so no rank tears its connections down while a
    peer still talks to it (gloo aborts the process then); pass False when leaving on an error,
    where the peers may never arrive.
    """
    if not (ctx.distributed and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    gc.collect()  # drop what still holds the group (DDP's reducer) before destroying it
    dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all ranks (in place, returned); unchanged for a single process."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if ``flag`` is true on any rank: decisions all ranks must share."""
    return any_ranks([flag], ctx)[0]


def any_ranks(flags: list[bool], ctx: DistContext) -> list[bool]:
    """:func:`any_rank` of several flags in one all-reduce (the same list for a single process)."""
    return [v > 0 for v in max_ranks([1.0 if flag else 0.0 for flag in flags], ctx)]


def max_ranks(values: list[float], ctx: DistContext) -> list[float]:
    """Each value's maximum over the ranks, in one all-reduce (float64: seconds keep their precision)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """Every rank's ``obj`` in rank order (on every rank); ``[obj]`` for a single process."""
    if not ctx.distributed:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's [lo, hi) of a global batch of ``n``: contiguous, sizes differ by at most one."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)
