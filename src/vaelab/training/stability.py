"""The update guard: gradient-norm clipping, skipping of exploding or non-finite updates, and the
check that keeps poisoned weights out of checkpoints and saved models.

Why: a VAE's loss has rare spikes -- a batch whose posterior variance or likelihood scale hits an
extreme gives a gradient many orders of magnitude above the usual one -- and one such update can
throw the weights somewhere training never recovers from, or fill them with NaN. VDVAE
(Child 2021, ``train.py``: ``grad_clip`` and ``skip_threshold``) clips every gradient and skips the
update when the norm is still extreme or any rank saw a NaN, and counts the skips; we do the same,
with every decision shared by all ranks so DDP replicas never drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

from vaelab.errors import DivergedError
from vaelab.training import distributed as D
from vaelab.training.config import TrainConfig


class PoisonedWeightsError(RuntimeError):
    """Weights hold NaN or infinity: refusing to write them (the previous checkpoint stays intact)."""


class UpdateGuard:
    """Decides, after ``backward``, whether this step's update is applied, and keeps the epoch's counts.

    Counters (reset each epoch, saved in mid-epoch checkpoints): ``skipped_nonfinite``,
    ``skipped_large`` (norm above ``skip_threshold``), ``clipped`` (applied updates whose gradient was
    rescaled to ``grad_clip``), and the sum, count and maximum of the finite gradient norms.
    """

    FIELDS = ("skipped_nonfinite", "skipped_large", "clipped", "norm_count", "norm_sum", "norm_max")

    def __init__(self, tc: TrainConfig, params: Iterable[nn.Parameter]) -> None:
        self.grad_clip = tc.grad_clip
        self.skip_threshold = tc.skip_threshold
        self.skip_nonfinite = tc.skip_nonfinite
        self.max_skips_in_a_row = tc.max_skips_in_a_row
        self.params = [p for p in params if p.requires_grad]
        self.skips_in_a_row = 0
        self.reset()

    def reset(self) -> None:
        """Zero the epoch's counters (the run of skips in a row goes on across epochs)."""
        self.counts = dict.fromkeys(self.FIELDS, 0.0)

    def state_dict(self) -> dict[str, float]:
        """The counters and the current run of skips, for a checkpoint."""
        return {**self.counts, "skips_in_a_row": float(self.skips_in_a_row)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore :meth:`state_dict`; a missing run of skips (older checkpoints) counts as none."""
        self.counts = {k: float(state.get(k, 0.0)) for k in self.FIELDS}
        self.skips_in_a_row = int(state.get("skips_in_a_row", 0))

    def allow(self, loss: torch.Tensor, ctx: D.DistContext) -> bool:
        """True to apply the update. Clips the gradients in place when the update goes ahead.

        Collective under torchrun: every rank calls it after ``backward`` and gets the same answer.
        Raises :class:`DivergedError` after ``max_skips_in_a_row`` skipped updates in a row: a model
        whose every step is non-finite never recovers by itself, and a run that skips on silently spends
        its whole budget doing nothing (seen: a colour run skipped every step from its 4th epoch on).
        """
        applied = self._decide(loss, ctx)
        self.skips_in_a_row = 0 if applied else self.skips_in_a_row + 1
        if self.max_skips_in_a_row and self.skips_in_a_row >= self.max_skips_in_a_row:
            raise DivergedError(
                f"training diverged: the last {self.skips_in_a_row} updates were all skipped (non-finite "
                "loss or gradient, or a norm above train.skip_threshold). The last checkpoint holds the "
                "weights from before; resume from it with a lower train.lr, or set train.grad_clip."
            )
        return applied

    def _decide(self, loss: torch.Tensor, ctx: D.DistContext) -> bool:
        norm, loss_finite = self._norm_and_loss_finite(loss)
        bad = not (math.isfinite(norm) and loss_finite)
        large = bool(self.skip_threshold) and norm > self.skip_threshold
        # The step's one host sync and (under torchrun) its one extra all-reduce: both flags at once.
        bad_anywhere, large_anywhere = D.any_ranks([bad, large], ctx)
        if self.skip_nonfinite and bad_anywhere:
            self.counts["skipped_nonfinite"] += 1
            return False
        if not bad:
            self.counts["norm_count"] += 1
            self.counts["norm_sum"] += norm
            self.counts["norm_max"] = max(self.counts["norm_max"], norm)
        if large_anywhere:
            self.counts["skipped_large"] += 1
            return False
        if self.grad_clip and norm > self.grad_clip:
            clip_grads_with_norm_(self.params, self.grad_clip, torch.tensor(norm))
            self.counts["clipped"] += 1
        return True

    def _norm_and_loss_finite(self, loss: torch.Tensor) -> tuple[float, bool]:
        """The gradients' global L2 norm and whether the loss is finite, read in one transfer."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return 0.0, bool(torch.isfinite(loss.detach()).all())
        norm = get_total_norm(grads)
        finite = torch.isfinite(loss.detach()).all().to(device=norm.device, dtype=norm.dtype)
        norm_value, finite_value = torch.stack([norm, finite]).tolist()
        return norm_value, bool(finite_value)

    def summary(self) -> dict[str, float | int | None]:
        """The epoch's metrics.jsonl fields."""
        c = self.counts
        n = int(c["norm_count"])
        return {
            "skipped_updates": int(c["skipped_nonfinite"] + c["skipped_large"]),
            "skipped_nonfinite": int(c["skipped_nonfinite"]),
            "skipped_large_grad": int(c["skipped_large"]),
            "clipped_updates": int(c["clipped"]),
            "grad_norm_mean": c["norm_sum"] / n if n else None,
            "grad_norm_max": c["norm_max"] if n else None,
        }


def check_finite(modules: dict[str, nn.Module | None], what: str) -> None:
    """Raise ``PoisonedWeightsError`` naming the first non-finite tensor of any module (None: skipped)."""
    for label, module in modules.items():
        if module is None:
            continue
        for name, tensor in nn.Module.state_dict(module).items():  # flat, whatever the class adds
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise PoisonedWeightsError(
                    f"refusing to write {what}: {label} tensor {name!r} holds NaN or infinity (the previous "
                    "one is intact). Keep train.skip_nonfinite on, or lower train.lr / set train.grad_clip."
                )
