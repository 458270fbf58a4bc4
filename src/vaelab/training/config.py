"""Validated configuration of the training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Optimiser, schedule length, seed and what the loop writes to the run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=100, ge=1)
    # Stop after this many optimisation steps even inside an epoch (0: no limit); for very large data.
    max_steps: int = Field(default=0, ge=0)
    batch_size: int = Field(default=128, ge=1)
    # Adam (Kingma & Ba 2015), as in the seed article.
    lr: float = Field(default=1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=0.0, ge=0.0)
    # One fused kernel for the whole Adam update instead of a dozen per tensor (same maths; on a CPU
    # it saves about 15% of a small MLP's step). Falls back to the foreach kernel where unsupported.
    fused_optimizer: bool = True
    # fp32, or bf16 autocast for the forward and backward pass (weights, optimiser and every
    # reported number stay fp32). bf16 pays off on CPUs with AVX512-BF16 or AMX and on recent GPUs.
    # fp16 (CUDA only) autocasts to float16 and scales the loss (torch.amp.GradScaler).
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # torch.compile the forward pass and the objective (inductor; CPUs too; the backward is compiled
    # with it): fuses the small element-wise ops around the matmuls. Costs ~10-60 s of compilation.
    compile: bool = False
    # Model and 4-d inputs in channels-last (NHWC) memory order, which oneDNN / cuDNN convolutions
    # prefer; no effect on MLPs. See docs/performance.md for when it pays.
    channels_last: bool = False
    # Count the step's FLOPs (torch.utils.flop_counter) and time a short matmul once per process, to
    # log achieved FLOP/s and its fraction of the machine's measured peak in every epoch line.
    log_flops: bool = True
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Torch intra-op threads on the CPU; None keeps torch's default (one per core).
    num_threads: int | None = Field(default=None, ge=1)
    eval_batch_size: int = Field(default=1000, ge=1)
    # Images in the per-epoch sample grid and reconstruction grid.
    grid_samples: int = Field(default=64, ge=1, le=1024)
    grid_reconstructions: int = Field(default=32, ge=1, le=512)
    # Also write a checkpoint every N optimisation steps (0: only at the end of each epoch), so a crash
    # loses at most N steps. Each is atomic and holds everything needed to continue the same batches.
    checkpoint_every: int = Field(default=0, ge=0)
    # Write grids every N epochs (the last epoch always gets them).
    image_every: int = Field(default=1, ge=1)
    # Every N epochs (and at the last), log a cheap importance-weighted log p(x) (K = eval_iw_samples)
    # on eval_images seeded validation images, and the active units; 0 turns it off.
    eval_every: int = Field(default=0, ge=0)
    eval_iw_samples: int = Field(default=100, ge=1)
    eval_images: int = Field(default=500, ge=1)
