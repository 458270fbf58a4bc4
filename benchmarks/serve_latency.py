"""Latency of the web app's decode request, measured from a second process.

Starts ``vaelab serve`` (uvicorn) on 127.0.0.1 in a subprocess, then this process sends a loop of
requests over one keep-alive HTTP connection, as the page does while a latent slider moves: each
request decodes one new latent (z ~ N(0, I)) and gets one 28x28 PNG back as JSON. Reports median,
95th percentile and more per model, plus sample (16 images) and reconstruct requests for context.

Latency does not depend on what the weights learned, so by default the MNIST-size models are built
from configs/seed.yaml (MLP) and configs/conv.yaml (conv) with fresh weights; pass --model to time
trained ones. Run it alone on the machine (timings are spoiled by parallel load):

    flock /tmp/vaelab-heavy.lock python benchmarks/serve_latency.py
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 30.0


def build_default_models(directory: Path) -> list[Path]:
    """The seed MLP and the conv VAE at MNIST size (1x28x28), freshly initialised and saved."""
    import torch

    from vaelab.config import read_yaml
    from vaelab.models import VAE, ModelConfig

    paths = []
    for name in ("seed", "conv"):
        torch.manual_seed(0)
        section = read_yaml(REPO / "configs" / f"{name}.yaml")["model"]
        model = VAE(ModelConfig.model_validate({**section, "image_shape": (1, 28, 28)}))
        paths.append(model.save_pretrained(directory / f"{name}-mnist"))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{base}/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


def time_requests(client: httpx.Client, url: str, bodies: list[dict], warmup: int) -> dict[str, float]:
    """Milliseconds per request (wall clock in this process, request sent to JSON parsed)."""
    times = []
    for i, body in enumerate(bodies):
        start = time.perf_counter()
        response = client.post(url, json=body)
        response.raise_for_status()
        response.json()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    ordered = sorted(times)
    return {
        "requests": len(times),
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="model to serve (repeatable)")
    parser.add_argument("--requests", type=int, default=1000, help="timed decode requests per model")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests first")
    parser.add_argument("--out", help="also write the JSON report here")
    args = parser.parse_args()

    from vaelab.runtime import environment

    with tempfile.TemporaryDirectory() as tmp:
        models = [Path(m) for m in args.model] or build_default_models(Path(tmp))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "vaelab", "serve", *map(str, models), "--port", str(port)]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until_up(base, server)
            results = {}
            with httpx.Client(base_url=base, timeout=30.0) as client:
                served = client.get("/api/models").json()
                rng = np.random.default_rng(0)
                for m in served:
                    n = args.requests + args.warmup
                    z = rng.standard_normal((n, m["latent_dim"])).round(4).tolist()
                    url = f"/api/models/{m['id']}"
                    decode = time_requests(client, f"{url}/decode", [{"z": [row]} for row in z], args.warmup)
                    few = max(50, args.requests // 5)
                    sample = time_requests(
                        client, f"{url}/sample", [{"n": 16, "seed": i} for i in range(few + 20)], 20
                    )
                    pixels = (rng.random((28, 28)) < 0.2).astype(np.uint8) * 255
                    image = _png_b64(pixels)
                    recon = time_requests(client, f"{url}/reconstruct", [{"image": image}] * (few + 20), 20)
                    results[m["id"]] = {
                        "model": m["path"],
                        "decode_1": decode,
                        "sample_16": sample,
                        "reconstruct_1": recon,
                    }
        finally:
            server.terminate()
            server.wait(timeout=30)

    worst_p95 = max(r["decode_1"]["p95_ms"] for r in results.values())
    report = {
        "benchmark": "serve_latency",
        "command": " ".join(["python", "benchmarks/serve_latency.py", *sys.argv[1:]]),
        "what": "POST /api/models/{id}/decode with one latent, answered with one PNG in JSON; uvicorn on "
        "127.0.0.1 in another process, one keep-alive connection, wall clock in the client",
        "target_ms": TARGET_MS,
        "meets_target": worst_p95 < TARGET_MS,
        "results": results,
        "environment": environment(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def _png_b64(pixels: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


if __name__ == "__main__":
    raise SystemExit(main())
