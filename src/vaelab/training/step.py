"""One optimisation step with the speed switches of ``TrainConfig``: precision, compile, channels_last.

The training loop and the benchmarks call the same :func:`build_step`, so a benchmark times exactly
the step users train with.

- ``precision``: ``bf16`` autocasts the forward and backward matmuls/convolutions to bfloat16 (CPU
  with AVX512-BF16 or AMX, recent GPUs); bf16 has fp32's exponent range, so no loss scaling.
  ``auto`` is bf16 where bf16 matmuls are fast and fp32 elsewhere (an AVX2-only CPU emulates bf16),
  so one config runs at its best on every machine.
  ``fp16`` (CUDA only) also autocasts, and scales the loss with :class:`torch.amp.GradScaler` so
  small gradients do not flush to zero in fp16 (Micikevicius et al. 2018, "Mixed precision
  training"); a step whose gradients overflowed is skipped and the scale lowered. Weights, Adam's
  state and every reported number stay fp32; the model builds its distributions in fp32.
- ``compile``: ``torch.compile`` of forward + objective. AOTAutograd traces the backward of the
  compiled graph too, so the backward is compiled as well; the fused Adam update is already one
  kernel, so the optimiser step is left as is.
- ``channels_last``: 4-d inputs (and, in the loop, the model) in NHWC memory order, which oneDNN's
  and cuDNN's convolutions prefer; it does nothing for an MLP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vaelab.errors import ConfigError
from vaelab.objectives import LossTerms
from vaelab.training.config import TrainConfig
from vaelab.training.distributed import DistContext
from vaelab.training.stability import UpdateGuard


@dataclass(frozen=True)
class AmpSettings:
    """What ``precision`` means on a device: the autocast dtype (None: fp32) and loss scaling."""

    dtype: torch.dtype | None
    grad_scaling: bool


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 matmuls are fast on ``device``: a GPU that supports them, or a CPU with AVX512-BF16
    or AMX. Elsewhere (AVX2 CPUs) PyTorch emulates them, and bf16 training runs ~15x slower than fp32."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        from vaelab.perf import cpu_features

        flags = cpu_features()
        return flags["avx512_bf16"] or flags["amx_bf16"]
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` as it runs on ``device``: ``auto`` is bf16 where :func:`fast_bf16`, else fp32."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def amp_settings(precision: str, device: torch.device | str) -> AmpSettings:
    """Autocast dtype and loss scaling for ``precision`` on ``device``; an unsupported pair is an error."""
    kind = torch.device(device).type
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return AmpSettings(None, False)
    if precision == "bf16":
        return AmpSettings(torch.bfloat16, False)
    if precision == "fp16":
        if kind != "cuda":
            raise ConfigError(
                f"train.precision=fp16 needs a CUDA GPU (this run is on {kind}); use bf16 on a CPU"
            )
        return AmpSettings(torch.float16, True)
    raise ValueError(f"train.precision must be auto, fp32, bf16 or fp16; got {precision!r}")


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last order when asked and 4-d, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _compiled_after_eager_call(fn: Callable[..., LossTerms], mode: str) -> Callable[..., LossTerms]:
    """``torch.compile(fn, mode=mode)``, whose first call runs ``fn`` once eagerly (no gradients, the
    RNG state restored) before dynamo traces it.

    Lazy Python-side caches fill on that eager call, so dynamo sees a plain dict lookup instead of
    their slow path: torch.distributions' KL dispatch (``kl_divergence``'s first call for a pair of
    types) does ``min()`` over a generator, which dynamo cannot trace; it broke the step into several
    graphs and cost the seed MLP's bf16 + compile step 7.8 ms against 4.7-5.9 (docs/performance.md).
    """
    compiled = torch.compile(fn, mode=mode)
    warmed = False

    def call(*args: object) -> LossTerms:
        nonlocal warmed
        if not warmed:
            gpus = [a.device for a in args if isinstance(a, torch.Tensor) and a.device.type == "cuda"]
            with torch.no_grad(), torch.random.fork_rng(devices=gpus[:1]):
                fn(*args)
            warmed = True
        return compiled(*args)

    return call


def build_scaler(config: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler for ``config.precision`` on ``device``: active for fp16 only, a no-op otherwise."""
    return torch.amp.GradScaler(device.type, enabled=amp_settings(config.precision, device).grad_scaling)


def build_step(
    net: nn.Module,
    objective: Callable,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    *,
    guard: UpdateGuard | None = None,
    ctx: DistContext | None = None,
    on_update: Callable[[], None] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Callable[..., tuple[LossTerms, bool]]:
    """``step(x, labels=None, kl_weight=1.0, weight=1.0)``: forward, objective, backward of
    ``weight * loss``, then the update unless ``guard`` refuses it (a NaN/inf or exploding gradient
    on any rank; it clips otherwise), and ``on_update`` (the EMA) after an applied update.

    Returns the step's :class:`LossTerms` (unweighted) and whether the update was applied.
    ``labels`` go to a conditional model; ``kl_weight`` is the KL annealing factor the objective
    applies; ``weight`` lets data-parallel ranks weight their share of a global batch.
    ``scaler`` is the loss scaler to use (the training loop passes its own, whose state the
    checkpoint keeps); by default one as :func:`build_scaler` makes it, also at ``step.scaler``.
    """
    amp = amp_settings(config.precision, device)
    autocast = torch.autocast(device.type, dtype=amp.dtype or torch.bfloat16, enabled=amp.dtype is not None)
    scaler = scaler if scaler is not None else build_scaler(config, device)
    ctx = ctx or DistContext(device=device)

    def compute_terms(x: torch.Tensor, labels: torch.Tensor | None, kl_weight: torch.Tensor) -> LossTerms:
        with autocast:
            return objective(net(x, labels, **objective.forward_kwargs), kl_weight)

    terms_of = (
        _compiled_after_eager_call(compute_terms, config.compile_mode) if config.compile else compute_terms
    )
    discriminator_step = getattr(objective, "discriminator_step", None)  # the adversarial objective's
    # The discriminator's own update autocasts to bf16 with the step; fp16 would need its own loss
    # scaler, so under fp16 it stays fp32.
    disc_autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp.dtype == torch.bfloat16)

    def step(
        x: torch.Tensor, labels: torch.Tensor | None = None, kl_weight: float = 1.0, weight: float = 1.0
    ) -> tuple[LossTerms, bool]:
        # kl_weight as a tensor on x's device, so torch.compile neither recompiles for each value nor
        # (as CUDA graphs) refuses a CPU input
        kl = torch.tensor(kl_weight, device=x.device)
        terms = terms_of(to_memory_format(x, config.channels_last), labels, kl)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms.loss * weight).backward()
        if guard is not None:
            scaler.unscale_(optimizer)  # the guard's norms and clipping see the true gradients
            if not guard.allow(terms.loss, ctx):
                scaler.update()  # an fp16 overflow lowers the scale; fp32/bf16: a no-op
                adversary_step(x, terms)
                return terms, False
        scaler.step(optimizer)  # an fp32 step is a plain optimizer.step()
        scaler.update()
        if on_update is not None:
            on_update()
        adversary_step(x, terms)
        return terms, True

    def adversary_step(x: torch.Tensor, terms: LossTerms) -> None:
        """The discriminator's update after the generator's, for an objective that has one."""
        if discriminator_step is not None:
            with disc_autocast:
                terms.stats |= discriminator_step(x, terms.fake)  # type: ignore[attr-defined]

    step.scaler = scaler  # type: ignore[attr-defined]
    return step


@dataclass(frozen=True)
class StepFlops:
    """A training step's model FLOPs per image (forward + backward) and the peak to compare them with."""

    per_image: float
    peak: float  # measured matmul FLOP/s of one process, in the step's precision
    precision: str

    def rates(self, images_per_s: float, processes: int = 1) -> dict[str, float]:
        """The log's FLOP figures at ``images_per_s`` (all processes together)."""
        achieved = self.per_image * images_per_s
        return {
            "gflop_per_image": self.per_image / 1e9,
            "gflop_per_s": achieved / 1e9,
            "peak_gflop_per_s": self.peak * processes / 1e9,
            "peak_fraction": achieved / (self.peak * processes),
        }


def step_flops(model: nn.Module, objective: Callable, config: TrainConfig, device: torch.device) -> StepFlops:
    """Count one step's FLOPs on a copy of ``model`` (a batch of zeros: FLOPs do not depend on the
    values) and measure the matmul peak in the step's precision (cached per process)."""
    import copy

    from vaelab.perf import count_flops, matmul_peak

    amp = amp_settings(config.precision, device)
    clone = copy.deepcopy(model)
    shape = getattr(model, "image_shape", None)
    if shape is None:
        raise ValueError("step_flops needs a model with an image_shape")
    x = to_memory_format(torch.zeros(config.batch_size, *shape, device=device), config.channels_last)
    classes = getattr(model, "num_classes", None)
    labels = torch.zeros(config.batch_size, dtype=torch.int64, device=device) if classes else None

    def fwd_bwd() -> None:
        with torch.autocast(device.type, dtype=amp.dtype or torch.bfloat16, enabled=amp.dtype is not None):
            loss = objective(clone(x, labels, **objective.forward_kwargs)).loss
        loss.backward()

    per_image = count_flops(fwd_bwd) / config.batch_size
    precision = resolve_precision(config.precision, device)
    return StepFlops(per_image, matmul_peak(precision, device), precision)
