"""The epoch's training metrics as a named accumulator that stays on the device.

Why: reading a number off a GPU (``.item()``, ``.cpu()``, ``.tolist()``) waits for every queued
kernel, and summing over ranks is a collective; doing either on every step stalls the pipeline the
step just filled. The sums therefore grow on the device, without a sync, and are read only where a
number is shown: the progress bar every few steps (this rank's sums), a checkpoint (each rank's own
sums, so a resumed epoch reports what an uninterrupted one would) and the epoch's end (one all-reduce).
"""

from __future__ import annotations

import torch

from vaelab.objectives import LossTerms
from vaelab.training import distributed as D

# The summed quantities: loss x images, and the sums over images of the ELBO, log p(x|z) and the KL.
TERMS = ("loss", "elbo", "log_px_z", "kl")


class RunningMeans:
    """Sums of :data:`TERMS` and the count of images behind them, over the applied steps of an epoch."""

    def __init__(self, device: torch.device) -> None:
        # float64 so a long epoch's sum does not lose the small terms; MPS has no float64.
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(len(TERMS), dtype=self.dtype, device=device)
        self.images = 0

    def add(self, terms: LossTerms, images: int) -> None:
        """Add one step's terms for its ``images`` images (``terms.loss`` is their mean). No sync."""
        batch = [terms.loss.detach() * images, terms.elbo.detach().sum()]
        batch += [terms.log_px_z.detach().sum(), terms.kl.detach().sum()]
        self.sums += torch.stack(batch).to(self.dtype)
        self.images += images

    def local_means(self) -> dict[str, float]:
        """This rank's means so far (a sync: for the progress bar, every few steps)."""
        seen = max(self.images, 1)
        return {name: value / seen for name, value in zip(TERMS, self.sums.tolist(), strict=True)}

    def means(self, ctx: D.DistContext) -> tuple[dict[str, float], float]:
        """The epoch's means over every rank's images, and that number of images (at least 1).

        Collective under torchrun: one all-reduce of all the sums together."""
        count = torch.tensor([float(self.images)], dtype=self.dtype, device=self.sums.device)
        *sums, seen = D.all_reduce_sum(torch.cat([self.sums, count]), ctx).tolist()
        seen = max(seen, 1.0)
        return {name: value / seen for name, value in zip(TERMS, sums, strict=True)}, seen

    def state_dict(self) -> dict[str, float]:
        """This rank's sums by name, as exact Python floats, for a mid-epoch checkpoint."""
        return {**dict(zip(TERMS, self.sums.tolist(), strict=True)), "images": float(self.images)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        values = [float(state[name]) for name in TERMS]
        self.sums = torch.tensor(values, dtype=self.dtype, device=self.sums.device)
        self.images = int(state["images"])
