"""One epoch's batches: the seeded randomness of the epoch, and each rank's slice of every global batch.

Everything random in epoch ``e`` is seeded from (seed, e): the batch order, the binarisation and each
rank's reparameterisation noise. So a run resumed inside an epoch replays the same order up to its
checkpoint, and with the generators' states from the checkpoint continues the same sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from vaelab.data import ImageDataset, PackedDataset, batches, to_float
from vaelab.runtime import derive_seed
from vaelab.training import distributed as D


@dataclass
class EpochRandomness:
    """The epoch's generators: ``shuffle`` orders the batches, ``binarize`` binarises them (both shared
    by every rank); :meth:`seeded` also seeds this rank's torch RNG (the reparameterisation noise)."""

    shuffle: torch.Generator
    binarize: torch.Generator

    @classmethod
    def seeded(cls, seed: int, epoch: int, rank: int) -> EpochRandomness:
        torch.manual_seed(derive_seed(seed, "epoch", epoch, rank))
        return cls(
            shuffle=torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch)),
            binarize=torch.Generator().manual_seed(derive_seed(seed, "binarize", epoch)),
        )


def epoch_batches(
    dataset: ImageDataset | PackedDataset,
    batch_size: int,
    binarize: str,
    rng: EpochRandomness,
    ctx: D.DistContext,
    *,
    skip: int = 0,
    labels: bool = False,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None, float]]:
    """``(k, x, y, share)`` for each global batch ``k`` from ``skip`` on: this rank's images ``x`` on
    its device, their labels ``y`` (when ``labels``), and the weight ``share`` of its loss.

    The whole global batch is binarised with the shared generator before each rank takes its slice,
    so the data each rank sees equals a single process's batch. DDP averages gradients over ranks;
    weighting each rank's mean by its share of the global batch makes that average the gradient of
    the global batch's mean.
    """
    for k, (images, targets) in enumerate(batches(dataset, batch_size, shuffle=True, generator=rng.shuffle)):
        if k < skip:
            continue  # replay the epoch's order up to where the checkpoint was taken
        x_all = to_float(images, binarize, generator=rng.binarize)
        if len(x_all) < ctx.world_size:
            continue  # a final global batch smaller than the number of ranks
        lo, hi = D.shard_bounds(len(x_all), ctx.rank, ctx.world_size)
        x = x_all[lo:hi].to(ctx.device, non_blocking=True)
        y = targets[lo:hi].to(ctx.device, non_blocking=True) if labels else None
        yield k, x, y, (hi - lo) * ctx.world_size / len(x_all)
