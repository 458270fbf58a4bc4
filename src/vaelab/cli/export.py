"""``vaelab export``: write a trained model's encoder and decoder as ONNX graphs, checked with onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaelab.cli.common import add_model_command, require_extra, writing
from vaelab.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_model_command(sub, "export", run, data=False, split=False, device=False)
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (only onnx today)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the graphs into")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    p.add_argument(
        "--atol", type=float, default=None, help="largest allowed |ONNX - PyTorch| per output (default 1e-4)"
    )
    p.add_argument("--force", action="store_true", help="overwrite graphs already in DIR")


def run(args: argparse.Namespace) -> int:
    """Export the encoder and decoder as ONNX graphs (checked against PyTorch).

    Write DIR/encoder.onnx (x -> mean, std of q(z|x)), DIR/decoder.onnx (z -> image in [0, 1]) and
    DIR/export.json. Both graphs are then run with onnxruntime and compared with PyTorch; the command
    fails (exit 1) if any output differs by more than --atol. Needs the 'export' extra: pip install
    'vaelab[export]'.
    """
    require_extra("export", "ONNX export", "onnx", "onnxruntime", "onnxscript")
    from vaelab.export import DEFAULT_ATOL, ExportCheckError, export_onnx
    from vaelab.models import VAE

    atol = DEFAULT_ATOL if args.atol is None else args.atol
    if not atol > 0:
        raise UsageError(f"--atol must be positive, got {args.atol}")
    model = VAE.from_pretrained(args.model, device="cpu")
    with writing("--out", args.out):
        Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        report = export_onnx(model, args.out, opset=args.opset, atol=atol, overwrite=args.force)
    except ExportCheckError as exc:
        print(f"vaelab export: check failed: {exc}", file=sys.stderr)
        return 1
    errors = ", ".join(f"{k} {v:.1e}" for k, v in report.max_abs_error.items())
    print(f"wrote {report.encoder} and {report.decoder} (opset {report.opset})", file=sys.stderr)
    print(f"onnxruntime matches PyTorch: max |error| {errors} (tolerance {report.atol:g})", file=sys.stderr)
    return 0
