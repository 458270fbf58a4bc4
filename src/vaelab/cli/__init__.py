"""The ``vaelab`` command: thin subcommands over the library (each lives in its own module)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from vaelab import __version__
from vaelab.cli import control, data_cmd, evaluate, export, generate, score, serve, train_cmd

COMMANDS = (train_cmd, generate, control, evaluate, score, serve, export, data_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Train, evaluate and use variational autoencoders (VAEs) for images.",
        epilog="Run 'vaelab COMMAND --help' for the options of each command. Errors in what you give "
        "vaelab are one line (exit status 2); set VAELAB_DEBUG=1 to see the full traceback.",
    )
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def one_line(message: str) -> str:
    """A user error's message on one line (a config error lists its fields on lines of their own):
    one line per error keeps logs greppable and never looks like a traceback."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {'; '.join(lines[1:])}"
    return "; ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status: 0, 2 for a user error (one line
    naming the problem), 130 for Ctrl-C. Any other exception is a bug: it propagates with its
    traceback (exit status 1 from the interpreter)."""
    from vaelab.cli.common import USER_ERRORS

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if os.environ.get("VAELAB_DEBUG"):
            raise  # the full traceback, for bug reports
        print(f"vaelab {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
