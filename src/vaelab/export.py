"""Export a trained VAE's encoder and decoder as ONNX graphs, checked against PyTorch with onnxruntime.

Two graphs, because they are used apart (an app may only decode; a search index only encodes):

* ``encoder.onnx``: ``x`` (batch, C, H, W) float32 in [0, 1] -> ``mean``, ``std`` (batch, latent_dim):
  the posterior q(z|x) as the model builds it (log-variance clamp included).
* ``decoder.onnx``: ``z`` (batch, latent_dim) float32 -> ``image`` (batch, C, H, W) in [0, 1]: the
  likelihood's mean, the same image ``VAE.decode`` gives.

The batch axis is dynamic. After writing, both graphs are run with onnxruntime on inputs they were not
traced with (another batch size, real-looking images and prior draws) and compared with PyTorch; the
largest absolute difference must be within ``atol``, else :class:`ExportCheckError`.

This module sits beside ``generation/`` (it reads models), not in ``io/``: ``io`` is below ``models``
(models import io.atomic), and layers point one way.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vaelab import __version__
from vaelab.errors import OutputExistsError, UsageError
from vaelab.io.atomic import atomic_write, atomic_write_text
from vaelab.models.vae import VAE

ENCODER_NAME = "encoder.onnx"
DECODER_NAME = "decoder.onnx"
MANIFEST_NAME = "export.json"
# float32 graphs agree with PyTorch to ~1e-6 (operator order and fused kernels differ); 1e-4 on
# outputs in [0, 1] and on latent means leaves room for deeper models while catching any real error.
DEFAULT_ATOL = 1e-4
CHECK_BATCH = 7  # not the tracing batch (2): proves the batch axis really is dynamic


class ExportCheckError(RuntimeError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance."""


class _EncoderGraph(nn.Module):
    """x -> (mean, std) of q(z|x): the posterior's parameters as plain tensors."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.model.encode(x)
        return q.mean, q.stddev


class _DecoderGraph(nn.Module):
    """z -> the expected image in [0, 1]."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and how closely onnxruntime matched PyTorch."""

    encoder: str
    decoder: str
    opset: int
    atol: float
    max_abs_error: dict[str, float]
    image_shape: tuple[int, int, int]
    latent_dim: int


def _export(
    module: nn.Module, example: torch.Tensor, path: Path, names: tuple[list[str], list[str]], opset: int
) -> None:
    inputs, outputs = names
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), atomic_write(path) as tmp:
        warnings.simplefilter("ignore")  # the exporter's notes about torchvision and deprecations
        # The exporter logs its progress at INFO and WARNING; a CLI command should print only its result.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module.eval(),
            (example,),
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes={inputs[0]: {0: batch}},  # keyed by forward()'s argument name
            opset_version=opset,
            verbose=False,
        )
        assert program is not None
        program.save(str(tmp))


def check_onnx(
    model: VAE, directory: str | Path, atol: float = DEFAULT_ATOL, seed: int = 0
) -> dict[str, float]:
    """Run the exported graphs with onnxruntime and return the largest |ONNX - PyTorch| per output.

    Inputs: ``CHECK_BATCH`` images that look like data (blurred noise in [0, 1], not a constant) and
    as many draws from the prior. Raises ExportCheckError when an error exceeds ``atol``.
    """
    import onnxruntime as ort

    directory = Path(directory)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(CHECK_BATCH, *model.image_shape, generator=gen)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    z = torch.randn(CHECK_BATCH, model.latent_dim, generator=gen)
    with torch.inference_mode():
        q = model.encode(x.to(model.device))
        expected = {
            "mean": q.mean.cpu(),
            "std": q.stddev.cpu(),
            "image": model.decode(z.to(model.device)).cpu(),
        }
    options = ort.SessionOptions()
    options.log_severity_level = 3
    got: dict[str, torch.Tensor] = {}
    for name, feed in ((ENCODER_NAME, {"x": x}), (DECODER_NAME, {"z": z})):
        session = ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {k: v.numpy() for k, v in feed.items()})
        for meta, value in zip(session.get_outputs(), outputs, strict=True):
            got[meta.name] = torch.from_numpy(value)
    errors: dict[str, float] = {}
    for key, want in expected.items():
        if got[key].shape != want.shape:
            raise ExportCheckError(
                f"ONNX output {key!r} has shape {tuple(got[key].shape)}, PyTorch {tuple(want.shape)}"
            )
        errors[key] = float((got[key] - want).abs().max())
    bad = {k: v for k, v in errors.items() if not v <= atol}
    if bad:
        raise ExportCheckError(f"ONNX outputs differ from PyTorch by more than atol={atol:g}: {bad}")
    return errors


def export_onnx(
    model: VAE, directory: str | Path, *, opset: int = 18, atol: float = DEFAULT_ATOL, overwrite: bool = False
) -> ExportReport:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``export.json`` into ``directory``, then check them.

    Traced on the CPU in float32 (an ONNX graph does not depend on where the model trained). Existing
    files are an error unless ``overwrite``.
    """
    if model.num_classes:
        raise UsageError("ONNX export takes unconditional models: the graphs have no input for a label")
    if model.likelihood.sequential:
        raise UsageError(
            f"ONNX export traces one decoder pass; likelihood {model.config.likelihood.name!r} decodes "
            "one pixel at a time, which is not one graph: export a model with a non-autoregressive likelihood"
        )
    directory = Path(directory)
    paths = [directory / n for n in (ENCODER_NAME, DECODER_NAME, MANIFEST_NAME)]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist (pass --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    cpu = VAE(model.config)
    cpu.load_state_dict({k: v.detach().cpu().float() for k, v in model.state_dict().items()})
    cpu.eval()
    _export(_EncoderGraph(cpu), torch.rand(2, *cpu.image_shape), paths[0], (["x"], ["mean", "std"]), opset)
    _export(_DecoderGraph(cpu), torch.randn(2, cpu.latent_dim), paths[1], (["z"], ["image"]), opset)
    errors = check_onnx(cpu, directory, atol)
    report = ExportReport(
        encoder=str(paths[0]),
        decoder=str(paths[1]),
        opset=opset,
        atol=atol,
        max_abs_error=errors,
        image_shape=cpu.image_shape,
        latent_dim=cpu.latent_dim,
    )
    manifest = {
        "format": "vaelab-onnx",
        "vaelab_version": __version__,
        "torch_version": torch.__version__,
        **asdict(report),
        "inputs": {
            "encoder": {"x": "float32 (batch, C, H, W) in [0, 1]"},
            "decoder": {"z": "float32 (batch, latent_dim)"},
        },
        "outputs": {"encoder": ["mean", "std"], "decoder": ["image"]},
        "model": cpu.config.model_dump(mode="json"),
    }
    atomic_write_text(paths[2], json.dumps(manifest, indent=2) + "\n")
    return report
