"""Validated configuration of the training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


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
    # fp16 (CUDA only) autocasts to float16 and scales the loss (torch.amp.GradScaler). auto: bf16
    # where it is fast, fp32 elsewhere (on an AVX2-only CPU bf16 is emulated and ~15x slower).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # torch.compile the forward pass and the objective (inductor; CPUs too; the backward is compiled
    # with it): fuses the small element-wise ops around the matmuls. Costs ~10-60 s of compilation.
    compile: bool = False
    # torch.compile's mode: "reduce-overhead" also records the compiled step as CUDA graphs, one
    # launch for many small kernels (GPUs; for small models whose steps are launch-bound).
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    # Model and 4-d inputs in channels-last (NHWC) memory order, which oneDNN / cuDNN convolutions
    # prefer; no effect on MLPs. See docs/performance.md for when it pays.
    channels_last: bool = False
    # Flush denormal floats to zero on the CPU while training (FTZ/DAZ on every intra-op thread,
    # restored afterwards). Adam's moments for weights that never get a gradient (MNIST's blank
    # border) decay into the denormal range after ~800 steps, where each multiply is ~100x slower:
    # unflushed, the seed MLP's epochs slowed by a third from epoch 2 on (docs/performance.md).
    flush_denormals: bool = True
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
    # Every N epochs (and at the last) also keep a copy of the saved model (the EMA weights when on)
    # in run_dir/snapshots/epoch-NNNN, with its training minutes, so a learning curve can be measured
    # on the test set afterwards (the nll_vs_minutes benchmark) without touching it during training.
    # 0 turns it off.
    snapshot_every: int = Field(default=0, ge=0)
    # Keep the model of the epoch with the best validation -ELBO so far in run_dir/model-best (the
    # EMA weights when on), beside model/ (the last epoch's): a run that overfits keeps its best.
    keep_best: bool = True

    # --- Stability. Every option defaults to the plain loop above; docs/training.md says
    # why each exists and where it comes from. Schedules advance on every batch, skipped or not.
    # KL annealing: the KL's weight (times objective.beta) rises from 0 to 1. "linear": over
    # kl_anneal_steps, then 1 (warm-up, Sønderby et al. 2016); "cyclical": repeats every
    # kl_anneal_steps, rising during the first kl_anneal_ratio of each cycle, for kl_cycles cycles
    # (0: until the end), then 1 (Fu et al. 2019).
    kl_anneal: Literal["none", "linear", "cyclical"] = "none"
    kl_anneal_steps: int = Field(default=0, ge=0, validate_default=True)
    kl_anneal_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    kl_cycles: int = Field(default=0, ge=0)
    # Learning rate: linear warm-up over lr_warmup_steps, then "constant" or "cosine" decay to
    # lr * lr_min_ratio at lr_decay_steps (0: the run's planned length, max_steps or epochs x batches).
    # lr_decay_over "minutes": the cosine follows training time instead, reaching its end at
    # max_minutes whatever the machine's speed (a budget config fits a fast and a slow CPU alike; the
    # price: the schedule, hence the weights, no longer repeat exactly from the seed).
    lr_warmup_steps: int = Field(default=0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    lr_decay_steps: int = Field(default=0, ge=0)
    lr_decay_over: Literal["steps", "minutes"] = "steps"
    # Rescale the gradient when its global L2 norm exceeds grad_clip (0: off).
    grad_clip: float = Field(default=0.0, ge=0.0)
    # Skip the update when the gradient norm exceeds skip_threshold (0: off; VDVAE's skip_threshold).
    skip_threshold: float = Field(default=0.0, ge=0.0)
    # Skip the update on every rank when any rank's loss or gradient is NaN or infinite.
    skip_nonfinite: bool = True
    # Stop with an error after this many skipped updates in a row (0: never): the run has diverged, and
    # skipping on would spend its whole budget without one update. The last checkpoint is kept.
    max_skips_in_a_row: int = Field(default=100, ge=0)
    # Exponential moving average of the weights (0: off), used for validation, grids and the saved
    # model; the checkpoint holds raw and EMA weights (Polyak & Juditsky 1992; VDVAE's ema_rate).
    ema_decay: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Stop cleanly (validate, save the model, checkpoint) after this many minutes of training wall
    # time, counted over resumes (0: no limit).
    max_minutes: float = Field(default=0.0, ge=0.0)

    @field_validator("kl_anneal_steps")
    @classmethod
    def _anneal_needs_a_length(cls, steps: int, info: ValidationInfo) -> int:
        kind = info.data.get("kl_anneal", "none")
        if kind != "none" and steps == 0:
            raise ValueError(f"kl_anneal={kind!r} needs kl_anneal_steps > 0 (steps per warm-up or cycle)")
        return steps

    @model_validator(mode="after")
    def _minutes_need_a_budget(self) -> TrainConfig:
        if self.lr_decay_over == "minutes" and not self.max_minutes:
            raise ValueError("lr_decay_over='minutes' needs max_minutes > 0 (the time the decay spans)")
        return self
