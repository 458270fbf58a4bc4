"""The importance-weighted log-likelihood estimate and the conversion to bits per dimension.

log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x)   (Burda et al. 2015, eq. 8).

It is a stochastic lower bound on log p(x) whose expectation rises towards log p(x) as K grows; K = 1
is the single-sample ELBO. K = 5000 is the literature's headline setting, which is 5000 decoder
passes per image, so the K samples are drawn in chunks sized to a memory budget: each chunk's log
weights are reduced with log-sum-exp and folded into a running log-sum-exp, and no tensor ever holds
K x batch x pixels. Decoding a whole chunk (chunk x batch latents) at once keeps the matmuls large.

Because the chunks are nested, the estimate at every smaller K on the way (1, 10, 100, ...) comes for
free from the same samples: the paired "K-gap" readers need to judge a truncated K. The chunks all
have one size (a divisor of K where a good one exists) and a smaller K on the way splits a chunk's
weights rather than the chunk: a compiled estimator then sees one shape, not one per K.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from vaelab.models.vae import VAE

# Largest number of decoder-output elements held at once (per tensor; a few such tensors are live).
# 2^22 floats = 16 MiB: big enough that a chunk's matmuls run at full speed, small enough for any laptop.
DEFAULT_MAX_ELEMENTS = 1 << 22
LN2 = math.log(2.0)
N = TypeVar("N", float, torch.Tensor)  # one NLL, or a tensor of them (one per image)


@dataclass
class LogLikelihood:
    """Per-image importance-weighted estimates of log p(x), nats, at K and at the nested smaller Ks."""

    iw_samples: int
    log_px: torch.Tensor  # (N,) float64, the estimate at K = iw_samples
    by_k: dict[int, torch.Tensor] = field(default_factory=dict)  # K' -> (N,) estimate from the first K'
    seconds: float = 0.0
    precision: str = "fp32"  # of the network's matmuls (the densities are always fp32)
    compiled: bool = False  # whether the importance weights ran through torch.compile
    flops: float | None = None  # matmul/convolution FLOPs of the whole estimate (``iw_flops``)
    processes: int = 1  # worker processes the batches were shared out over
    resumed_batches: int = 0  # batches read from a journal of an earlier, interrupted run
    journal: Path | None = None  # the journal file, while it exists

    @property
    def images(self) -> int:
        return int(self.log_px.numel())

    def mean_and_se(self, k: int | None = None) -> tuple[float, float]:
        """Mean over images and its standard error (sample std / sqrt(N)) at ``k`` (default: K)."""
        return mean_and_se(self.by_k[k] if k is not None else self.log_px)

    def speed(self, device: torch.device | str) -> dict[str, Any]:
        """How close the estimate ran to this machine's measured matmul peak: its counted FLOPs, their
        rate, and the seconds those FLOPs need at the fp32 (and, for bf16, the bf16) peak of one process."""
        if not self.flops or self.seconds <= 0:
            return {}
        from vaelab.perf import matmul_peak

        peaks = {p: matmul_peak(p, device) for p in dict.fromkeys(("fp32", self.precision))}
        return {
            "gflop": self.flops / 1e9,
            "gflop_per_s": self.flops / self.seconds / 1e9,
            "peak_gflop_per_s": {p: v / 1e9 for p, v in peaks.items()},
            "seconds_at_peak": {p: self.flops / v for p, v in peaks.items()},
            "time_over_fp32_peak_time": self.seconds / (self.flops / peaks["fp32"]),
        }


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of a per-image quantity and the standard error of that mean over the images."""
    values = values.double().flatten()
    n = values.numel()
    if n == 0:
        return float("nan"), float("nan")
    se = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se


def nested_ks(iw_samples: int) -> list[int]:
    """The K values reported on the way to ``iw_samples``: 1, 10, 100, ... below it, then K itself."""
    ks, k = [], 1
    while k < iw_samples:
        ks.append(k)
        k *= 10
    return [*ks, iw_samples]


def nats_to_bits_per_dim(nll_nats: N, num_dims: int, levels: int | None = 256) -> N:
    """Negative log-likelihood per image (nats; a number, or a tensor of one per image) -> bits per
    dimension.

    ``levels=256``: the likelihood is a density over pixels scaled to [0, 1], and each 8-bit pixel
    value owns a bin of width 1/256, so the discrete NLL is the density's NLL + D ln 256 (the
    convention of Theis et al. 2016 and every bits/dim table since). ``levels=None``: the likelihood
    is already discrete (e.g. Bernoulli over binary pixels) and only the unit changes.
    """
    offset = num_dims * math.log(levels) if levels is not None else 0.0
    return (nll_nats + offset) / (num_dims * LN2)


# model -> its compiled importance weights. The value is compiled from the unbound method (it holds
# no reference to the model), so an entry goes when its model does.
_COMPILED: weakref.WeakKeyDictionary[VAE, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()


def importance_weights_fn(model: VAE, compile: bool) -> Callable[..., torch.Tensor]:
    """``model.log_importance_weights``, through ``torch.compile`` when ``compile`` is set.

    Why compile: per decoder pass the Bernoulli log-density is 784 element-wise log-sigmoids and
    their sum, which eager PyTorch runs as several passes over memory; inductor fuses them with the
    decoder's last layer into one loop (docs/performance.md). Compiling costs 10-30 s once per model
    and chunk shape: it pays for long evaluations (K in the thousands), not for a quick check.
    ``fallback_random``: the latents come from torch's generator as in eager mode, so a seed gives
    the same draws, compiled or not.
    """
    if not compile:
        return model.log_importance_weights
    fn = _COMPILED.get(model)
    if fn is None:
        # dynamic=False: each of the few chunk shapes (see ``chunk_sizes``) gets its own static
        # kernels, rather than a second shape switching everything to slower dynamic-shape code.
        fn = _COMPILED[model] = torch.compile(
            type(model).log_importance_weights, dynamic=False, options={"fallback_random": True}
        )
    return functools.partial(fn, model)


def samples_per_chunk_cap(model: VAE, batch: int, max_elements: int) -> int:
    """Most samples per image one chunk may hold: chunk x batch x pixels within ``max_elements``."""
    return max(1, max_elements // max(1, batch * model.elements_per_sample()))


def chunk_sizes(iw_samples: int, cap: int) -> list[int]:
    """How many of the K samples to draw at a time: chunks of one size, at most ``cap`` each.

    The size is K itself when it fits, else the largest divisor of K between cap/2 and cap (so
    K = 5000 under a cap of 53 is 100 chunks of 50), else ``cap`` with a smaller last chunk. One
    size means one compiled shape; no divisor costs one more.
    """
    if iw_samples < 1 or cap < 1:
        raise ValueError(f"iw_samples and cap must be >= 1; got {iw_samples}, {cap}")
    if iw_samples <= cap:
        return [iw_samples]
    size = next((d for d in range(cap, (cap + 1) // 2 - 1, -1) if iw_samples % d == 0), cap)
    full, rest = divmod(iw_samples, size)
    return [size] * full + ([rest] if rest else [])


@torch.inference_mode()
def iw_log_likelihood_batch(
    model: VAE,
    x: torch.Tensor,
    iw_samples: int,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    report_ks: tuple[int, ...] = (),
    labels: torch.Tensor | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[int, torch.Tensor]:
    """Importance-weighted log p(x) of each image in ``x`` (B, C, H, W); float64, nats.

    Returns {K': (B,) estimate} for ``iw_samples`` and every K' in ``report_ks`` (each uses the first
    K' of the same samples). Latents come from torch's global generator: seed it (or fork it) for
    repeatable numbers. At most ``max_elements`` decoder outputs (chunk x B x pixels) exist at once.
    A conditional model needs the images' ``labels`` (B,): the estimate is then of log p(x|y).
    ``precision="bf16"`` runs the encoder's and decoder's matmuls under bf16 autocast (the log
    densities stay fp32, the sums over samples fp64); see docs/performance.md for how far it moves
    the estimate. ``compile=True`` runs the importance weights through ``torch.compile`` (see
    ``importance_weights_fn``): the same draws, the same numbers to float rounding, faster.
    """
    if iw_samples < 1:
        raise ValueError(f"iw_samples must be >= 1; got {iw_samples}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16; got {precision!r}")
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    log_weights = importance_weights_fn(model, compile)
    b = x.shape[0]
    cap = samples_per_chunk_cap(model, b, max_elements)
    stops = sorted({k for k in report_ks if 0 < k < iw_samples} | {iw_samples})
    running = torch.full((b,), -math.inf, dtype=torch.float64, device=x.device)
    out: dict[int, torch.Tensor] = {}
    done = 0
    for k in chunk_sizes(iw_samples, cap):
        # The model's one importance-weight hook (also behind the IWAE objective): (k, B) values of
        # log p(x, z) - log q(z|x), over every stochastic layer of a hierarchical model. Under bf16
        # autocast only matmuls/convolutions drop to bf16: the model builds its densities in fp32.
        with autocast:
            log_w = log_weights(x, k, labels).double()
        # Fold the chunk's weights in, cut at every reported K that falls inside it.
        start = 0
        for cut in [s - done for s in stops if done < s <= done + k]:
            running = torch.logaddexp(running, torch.logsumexp(log_w[start:cut], dim=0))
            out[done + cut] = (running - math.log(done + cut)).cpu()
            start = cut
        if start < k:
            running = torch.logaddexp(running, torch.logsumexp(log_w[start:], dim=0))
        done += k
    return out


def iw_flops(
    model: VAE, x: torch.Tensor, iw_samples: int, chunks: int, labels: torch.Tensor | None = None
) -> float:
    """Matmul and convolution FLOPs of the estimate for the images ``x`` (B, C, H, W) drawn in
    ``chunks`` calls: each call encodes the B images once and decodes k samples of each, so the count
    is chunks x encoder + K x (decoder and densities), measured with ``FlopCounterMode`` on two probe
    passes (k = 1 and 2) of the first image. The yardstick for "how close to the machine's peak"."""
    from vaelab.perf import count_flops

    probe = x[:1]
    y = labels[:1] if labels is not None else None
    with torch.inference_mode():
        one = count_flops(lambda: model.log_importance_weights(probe, 1, y))
        two = count_flops(lambda: model.log_importance_weights(probe, 2, y))
    per_sample = two - one  # one more decoder pass
    per_call = one - per_sample  # the encoder's share of a call
    return float(x.shape[0] * (chunks * per_call + iw_samples * per_sample))
