"""One 3x3 convolution's three passes, timed alone: where a convolutional network's FLOP/s stop.

For each shape (the residual config's by default) and precision this times, channels-last, batch 128:
the forward (``F.conv2d``), the backward for the input and the backward for the weights (both
``aten.convolution_backward``, what autograd calls; oneDNN on a CPU), each as GFLOP/s and as a
fraction of a 1024x1024 matmul peak measured right before and after the shape (median of the two).
Two other ways to get the same weight gradient are timed beside oneDNN's, each checked against it:

- ``im2col_gemm``: unfold the padded input into (N*H*W, 9*C) rows and multiply by the output gradient
  (one large matmul, where AMX / MKL are at their best; the unfold is a copy): what vaelab's
  ``Conv2d`` does for small bf16 convolutions being trained (``gemm_weight_grad``);
- ``as_forward_conv``: the weight gradient is itself a convolution (the input's channels as a batch,
  the output gradient as the kernel), timed through oneDNN's forward kernels.

Prints one JSON object. The bf16 runs found oneDNN's backward-weights pass at a third of its
forward on a CPU with AMX (docs/performance.md); this script is the check on another machine.

    python benchmarks/conv_kernels.py
    python benchmarks/conv_kernels.py --shapes 64x64@14 128x128@7 64x128@14/2 --precisions bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vaelab.models.parts.layers import gemm_weight_grad
from vaelab.perf import DTYPES, cpu_features, matmul_peak
from vaelab.runtime import environment

# configs/residual.yaml (patch 2): the stem, 64 ch at 14x14, the stride-2 step, 128 ch at 7x7, the
# decoder's widths back, and the 4-channel output convolution.
RESIDUAL_SHAPES = ["4x64@14", "64x64@14", "64x128@14/2", "128x128@7", "128x64@14", "64x4@14"]


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``CINxCOUT@SIDE[/STRIDE]`` -> (cin, cout, side, stride); ``64x128@14/2`` is a stride-2 conv."""
    try:
        channels, rest = text.split("@")
        cin, cout = (int(c) for c in channels.split("x"))
        side, _, stride = rest.partition("/")
        return cin, cout, int(side), int(stride or 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"shape {text!r}: expected CINxCOUT@SIDE[/STRIDE], e.g. 64x128@14/2"
        ) from exc


def forward_conv_weight_grad(x: torch.Tensor, gy: torch.Tensor, stride: int) -> torch.Tensor:
    """Weight gradient of a 3x3, padding-1 convolution as a forward convolution (stride 1 only):
    batch and channels swap places, and the output gradient is the kernel."""
    if stride != 1:
        raise ValueError("as_forward_conv covers stride-1 convolutions")
    xt = x.transpose(0, 1).contiguous(memory_format=torch.channels_last)
    gt = gy.transpose(0, 1).contiguous(memory_format=torch.channels_last)
    return F.conv2d(xt, gt, None, 1, 1).transpose(0, 1)


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_shape(shape: tuple[int, int, int, int], precision: str, batch: int, repeats: int) -> dict:
    """GFLOP/s of the three passes and of the two other weight-gradient routes for one shape."""
    cin, cout, side, stride = shape
    dtype = DTYPES[precision]
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(batch, cin, side, side, generator=gen).to(dtype).contiguous(memory_format=cl)
    w = (torch.randn(cout, cin, 3, 3, generator=gen) / (3 * cin**0.5)).to(dtype).contiguous(memory_format=cl)
    y = F.conv2d(x, w, None, stride, 1)
    gy = torch.randn(y.shape, generator=gen).to(dtype).contiguous(memory_format=cl)
    flops = 2 * batch * cout * y.shape[2] * y.shape[3] * cin * 9

    def backward(mask: list[bool]) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.convolution_backward(
            gy, x, w, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    peaks = [matmul_peak(precision, fresh=True)]
    passes = {
        "forward": lambda: F.conv2d(x, w, None, stride, 1),
        "backward_input": lambda: backward([True, False, False]),
        "backward_weight": lambda: backward([False, True, False]),
        "backward_weight_im2col_gemm": lambda: gemm_weight_grad(x, gy, w.shape, (stride,) * 2, (1, 1))[0],
    }
    if stride == 1:
        passes["backward_weight_as_forward_conv"] = lambda: forward_conv_weight_grad(x, gy, stride)
    reference = backward([False, True, False])[1].float()
    errors = {
        name: float((fn().float() - reference).norm() / reference.norm())
        for name, fn in passes.items()
        if name.startswith("backward_weight_")
    }
    gflops = {name: flops / seconds(fn, repeats) / 1e9 for name, fn in passes.items()}
    peaks.append(matmul_peak(precision, fresh=True))
    peak = statistics.median(peaks) / 1e9
    return {
        "shape": f"{cin}x{cout}@{side}" + (f"/{stride}" if stride > 1 else ""),
        "precision": precision,
        "gflop": flops / 1e9,
        "gflop_per_s": gflops,
        "peak_gflop_per_s": peak,
        "peak_fraction": {name: g / peak for name, g in gflops.items()},
        "relative_error_vs_onednn": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in RESIDUAL_SHAPES])
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    results = [
        time_shape(shape, precision, args.batch, args.repeats)
        for precision in args.precisions
        for shape in args.shapes
    ]
    report = {
        "benchmark": "conv_kernels",
        "batch": args.batch,
        "cpu_features": cpu_features(),
        "results": results,
    }
    report["environment"] = environment()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
