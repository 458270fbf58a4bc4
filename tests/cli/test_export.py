"""``vaelab export --format onnx``: graphs that onnxruntime runs and that match PyTorch within 1e-4."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vaelab.cli import main
from vaelab.export import DEFAULT_ATOL, ExportCheckError, check_onnx
from vaelab.models import VAE

ARCHS = {
    "mlp": ["--set", "model.encoder.hidden_dims=[32]", "--set", "model.decoder.hidden_dims=[32]"],
    "conv": [
        "--set", "model.encoder={name: conv, channels: [4, 8], hidden_dim: 16}",
        "--set", "model.decoder={name: conv, channels: [8, 4], hidden_dim: 16}",
    ],
    # PixelUnshuffle / PixelShuffle export as ONNX reshapes and DepthToSpace: same numbers.
    "conv-patch2": [
        "--set", "model.encoder={name: conv, channels: [4, 8], hidden_dim: 16, patch: 2}",
        "--set", "model.decoder={name: conv, channels: [8, 4], hidden_dim: 16, patch: 2}",
    ],
}  # fmt: skip


@pytest.fixture(params=list(ARCHS))
def run(request, blobs_npz, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", str(blobs_npz), "--epochs", "1", "--run-dir", str(run), "--no-progress"]
    assert main([*args, "--device", "cpu", "--set", "model.latent_dim=3", *ARCHS[request.param]]) == 0
    return run


def test_export_matches_pytorch(run, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().err
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["image_shape"] == [1, 12, 12] and manifest["latent_dim"] == 3
    assert all(err <= DEFAULT_ATOL for err in manifest["max_abs_error"].values())

    # An independent check with a batch size the graphs were neither traced nor checked with.
    model = VAE.from_pretrained(run)
    x = torch.rand(13, 1, 12, 12)
    z = torch.randn(13, 3)
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    mean, std = enc.run(["mean", "std"], {"x": x.numpy()})
    (image,) = dec.run(["image"], {"z": z.numpy()})
    with torch.no_grad():
        q = model.encode(x)
        np.testing.assert_allclose(mean, q.mean.numpy(), atol=DEFAULT_ATOL)
        np.testing.assert_allclose(std, q.stddev.numpy(), atol=DEFAULT_ATOL)
        np.testing.assert_allclose(image, model.decode(z).numpy(), atol=DEFAULT_ATOL)
    assert image.min() >= 0 and image.max() <= 1

    # The check catches graphs that do not belong to the model; existing files need --force.
    other = VAE(model.config)
    with pytest.raises(ExportCheckError, match="differ"):
        check_onnx(other, out)
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_export_user_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "o")])
