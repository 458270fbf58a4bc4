"""Validated configuration of the training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Optimiser, schedule length, seed and what the loop writes to the run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=128, ge=1)
    # Adam (Kingma & Ba 2015), as in the seed article.
    lr: float = Field(default=1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=0.0, ge=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Torch intra-op threads on the CPU; None keeps torch's default (one per core).
    num_threads: int | None = Field(default=None, ge=1)
    eval_batch_size: int = Field(default=1000, ge=1)
    # Images in the per-epoch sample grid and reconstruction grid.
    grid_samples: int = Field(default=64, ge=1, le=1024)
    grid_reconstructions: int = Field(default=32, ge=1, le=512)
    # Write grids every N epochs (the last epoch always gets them).
    image_every: int = Field(default=1, ge=1)
