"""``vaelab serve``: the local web app and REST API over one or more trained models."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from vaelab.cli.common import add_command, add_device_option, require_extra
from vaelab.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", run)
    p.add_argument("models", nargs="+", metavar="MODEL", help="run directories or saved-model directories")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; the API has no authentication)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_device_option(p, default="cpu")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Explore trained models in a local web app (with a REST API).

    Serve a latent-space explorer for one or more models: samples, reconstructions of drawn or
    uploaded images, interpolations, latent sliders, a PCA map of test encodings, configs and training
    curves, side by side. The REST API is documented at /docs. Works offline. Needs the 'serve' extra:
    pip install 'vaelab[serve]'.
    """
    require_extra("serve", "vaelab serve", "fastapi", "fastapi_offline", "uvicorn")
    import uvicorn

    from vaelab.runtime import resolve_device
    from vaelab.serve import create_app_from_paths

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if not is_loopback(args.host):
        print(
            f"vaelab serve: warning: binding {args.host} makes the API reachable from other machines; it "
            "has no authentication. Use the default --host 127.0.0.1 unless you mean that.",
            file=sys.stderr,
        )
    app = create_app_from_paths(args.models, device=resolve_device(args.device))
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}/"
    print(f"vaelab serve: {len(app.state.models)} model(s) at {url}  (API docs: {url}docs)", file=sys.stderr)
    if args.open:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
