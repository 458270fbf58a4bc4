"""The one harness every benchmark runs in: a registry, one argument parser, one timing utility, one report.

A benchmark is a typed function decorated with :func:`benchmark`: its docstring is its help, its
parameters its options. Each also takes ``--seed`` (seeding every generator), ``--threads`` and ``--out
FILE`` and prints one JSON object: name, command, machine, date, seed, settings, results; a result with
``"passed": false`` exits with status 1. Timings: warm-up calls first, untimed, then timed repeats,
summarised by their median and interquartile range.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The modules whose benchmarks `python -m benchmarks` runs, in the order its help lists them.
MODULES = (
    "speed",
    "pipeline",
    "quality",
    "guidance",
    "reliability",
    "photos32",
    "sharp",
    "priors",
    "ood",
    "ood_states",
    "frontier",
    "iw_cost",
    "gpu",
)
BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {}
Clock = Callable[[], float]
PYTHAE_VENV, PYTHAE = REPO / "benchmarks" / ".venv-pythae", "pythae==0.1.2"  # the peer, in its own venv
STDERR = 2  # where subprocesses write: stdout carries only the report (a descriptor survives capture)


def benchmark(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Register ``fn`` as the benchmark of its own name."""
    BENCHMARKS[fn.__name__] = fn
    return fn


def registry() -> dict[str, Callable[..., dict[str, Any]]]:
    """Every registered benchmark by name (importing the modules registers them)."""
    for module in MODULES:
        importlib.import_module(f"benchmarks.{module}")
    return BENCHMARKS


@dataclass(frozen=True)
class Timing:
    """Seconds per call in each timed repeat, by the wall clock and by this process's CPU time (all its
    threads: CPU time well above wall time means the threads worked in parallel)."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the wall times, interpolated between its two neighbours."""
        return float(np.quantile(self.wall, q))

    @property
    def iqr(self) -> float:
        return self.quantile(0.75) - self.quantile(0.25)

    def summary(self, unit: Literal["s", "ms"] = "s") -> dict[str, Any]:
        """Median, interquartile range, extremes, the CPU time's median and every repeat, in ``unit``."""
        k = 1e3 if unit == "ms" else 1.0
        figures = {"median": self.median, "iqr": self.iqr, "min": min(self.wall), "max": max(self.wall)}
        figures["cpu_median"] = statistics.median(self.cpu)
        scaled = {f"{key}_{unit}": value * k for key, value in figures.items()}
        return scaled | {f"each_{unit}": [t * k for t in self.wall]}


def round_robin(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    number: int = 1,
    warmup: int = 1,
    after_round: Callable[[], object] | None = None,
    clock: Clock = time.perf_counter,
    cpu_clock: Clock = time.process_time,
) -> dict[str, Timing]:
    """Time every function of ``fns`` once per round, ``number`` calls at a time, the functions taking
    turns: on a shared machine whose speed drifts by tens of percent within minutes, a drift then slows
    them all alike and their ratio holds. Each first gets ``warmup`` untimed calls (thread pools, caches,
    compilation); ``after_round`` runs between rounds, untimed (a fresh matmul peak, say)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timings = {name: Timing([], []) for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, start_cpu = clock(), cpu_clock()
            for _ in range(number):
                fn()
            timings[name].wall.append((clock() - start) / number)
            timings[name].cpu.append((cpu_clock() - start_cpu) / number)
        if after_round is not None:
            after_round()
    return timings


def measure(
    fn: Callable[[], object], repeats: int, number: int = 1, warmup: int = 1, **clocks: Clock
) -> Timing:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed groups of ``number``."""
    return round_robin({"fn": fn}, repeats, number, warmup, **clocks)["fn"]


def usable_cores() -> int:
    """The cores this process may run on (``taskset`` narrows them; ``os.cpu_count`` does not see it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def report(name: str, argv: list[str], settings: dict[str, Any], seed: int, results: Any) -> dict[str, Any]:
    """The one JSON schema of every benchmark's output; the machine is what a timing depends on (CPU
    model and fast-path flags, cores, threads, library versions)."""
    from vaelab.runtime import environment

    return {
        "name": name,
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "machine": environment() | {"cores_usable": usable_cores()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "settings": settings,
        "results": results,
    }


def _add_option(parser: argparse.ArgumentParser, param: inspect.Parameter, hint: Any) -> None:
    """The command-line option of one benchmark parameter, read off its type and default: ``steps: int =
    20`` is ``--steps N``, a ``tuple`` takes several values, a ``Literal`` gives choices, a ``bool`` is a
    ``--x/--no-x`` switch, no default makes it positional, ``overrides`` is ``vaelab train``'s ``--set``."""
    if param.name == "overrides":
        text = "a config override, as for vaelab train (repeatable)"
        parser.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=text
        )
        return
    kwargs: dict[str, Any] = {}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) in (list, tuple):
        kwargs["nargs"], hint = "+", typing.get_args(hint)[0]
    if typing.get_origin(hint) is Literal:
        kwargs["choices"] = typing.get_args(hint)
        hint = type(kwargs["choices"][0])
    kwargs |= {"action": argparse.BooleanOptionalAction} if hint is bool else {"type": hint}
    if param.default is inspect.Parameter.empty:
        parser.add_argument(param.name, **kwargs)
    else:
        shown = " ".join(map(str, param.default)) if isinstance(param.default, tuple) else param.default
        text = "default: " + str(shown).replace(f"{REPO}/", "")
        parser.add_argument("--" + param.name.replace("_", "-"), default=param.default, help=text, **kwargs)


def parser() -> argparse.ArgumentParser:
    """``python -m benchmarks NAME [options]``, one sub-command per registered benchmark."""
    raw = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=raw)
    names = top.add_subparsers(dest="benchmark", required=True, metavar="NAME", title="benchmarks")
    for name, fn in registry().items():
        doc = inspect.getdoc(fn) or name
        summary = doc.split("\n\n")[0].replace("\n", " ")
        sub = names.add_parser(name, help=summary, description=doc, formatter_class=raw)
        hints = typing.get_type_hints(fn)
        for param in inspect.signature(fn).parameters.values():
            if param.name != "seed":
                _add_option(sub, param, hints[param.name])
        sub.add_argument("--seed", type=int, default=0, help="seeds Python, NumPy and torch (default: 0)")
        sub.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
        sub.add_argument("--out", type=Path, help="also write the JSON report to this file")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark, every random generator seeded first, print its report and write it to
    ``--out``; 1 when a result says it failed."""
    import torch

    from vaelab.runtime import seed_everything

    argv = sys.argv[1:] if argv is None else list(argv)
    options = vars(parser().parse_args(argv))
    name, seed, threads, out = (options.pop(key) for key in ("benchmark", "seed", "threads", "out"))
    fn = registry()[name]
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    results = fn(**options, **({"seed": seed} if "seed" in inspect.signature(fn).parameters else {}))
    text = json.dumps(report(name, argv, options, seed, results), indent=2, default=str)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return 1 if isinstance(results, dict) and results.get("passed") is False else 0


def in_subprocess(fn: Callable[..., Any] | str, python: object = sys.executable, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` in a fresh Python process (its own compile caches, threads and peak memory) of
    ``python``, ``fn`` a function or "module:name"; its result comes back in JSON, on stdout's last line."""
    module, name = fn.split(":") if isinstance(fn, str) else (fn.__module__, fn.__name__)
    code = "import json, sys; from {} import {} as f; print(json.dumps(f(**json.loads(sys.argv[1]))))"
    cli = [str(python), "-c", code.format(module, name), json.dumps(kwargs, default=str)]
    done = subprocess.run(cli, cwd=REPO, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def pythae_python() -> Path:
    """The Python of the peer pythae's own environment, benchmarks/.venv-pythae, made when missing or
    broken: pythae is never a dependency of vaelab, and pip installs torch first, then names it again
    beside pythae, so that it can never swap in another torch build."""
    python = PYTHAE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import pythae, torch; print(torch.__version__)"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        import torch

        torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # the torch release vaelab runs on
        print(f"making pythae's environment in {PYTHAE_VENV} ({torch_pin}, {PYTHAE})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PYTHAE_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, torch_pin], check=True, stdout=STDERR)
        subprocess.run([*pip, torch_pin, PYTHAE], check=True, stdout=STDERR)
    return python


def vaelab(*args: object, processes: int = 1, threads: int | None = None) -> None:
    """The ``vaelab`` command line in a subprocess (under torchrun for several ``processes``, with
    ``threads`` OpenMP threads each), its output sent to stderr: stdout carries only the report."""
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cli = [sys.executable, *(launch if processes > 1 else []), "-m", "vaelab", *map(str, args)]
    env = os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    subprocess.run(cli, check=True, stdout=STDERR, env=env)


def evaluate(model: object, *args: object) -> dict[str, Any]:
    """``vaelab evaluate MODEL --split=test ARGS`` in a subprocess: its report."""
    with tempfile.TemporaryDirectory() as out:
        vaelab("evaluate", model, "--split=test", "--no-progress", *args, "--out", out)
        return json.loads((Path(out) / "report.json").read_text())


def train_cli(run_dir: object, *args: object, **launch: Any) -> dict[str, Any]:
    """``vaelab train ARGS`` into ``run_dir`` in a subprocess (``launch``: as for :func:`vaelab`): what
    its metrics.jsonl says of the training (:func:`training_figures`), and the command's wall seconds."""
    start = time.perf_counter()
    vaelab("train", *args, "--run-dir", run_dir, "--no-progress", **launch)
    return training_figures(run_dir) | {"wall_seconds": time.perf_counter() - start}


def training_figures(run_dir: object) -> dict[str, Any]:
    """What a finished run's metrics.jsonl says of its training: seconds, images/s, steps, final loss."""
    from vaelab.io.metrics import read_metrics

    rows = [row for row in read_metrics(run_dir) if "train_seconds" in row]
    seconds = sum(row["train_seconds"] for row in rows)
    images = sum(row["images_per_s"] * row["train_seconds"] for row in rows)
    return {
        "train_seconds": seconds,
        "images_per_s": images / seconds,  # all images seen over all training seconds
        "images_seen": round(images),
        "steps": rows[-1]["step"],
        "final_train_loss": rows[-1]["train_loss"],
        "peak_rss_mb": rows[-1]["peak_rss_mb"],  # the training process's high-water mark
    }


def train_in_process(config: Any, run_dir: Path | None = None, **kwargs: Any) -> tuple[Any, float]:
    """``vaelab.training.train`` into ``run_dir`` (kept) or a scratch directory: result, wall seconds."""
    from vaelab.training import train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, run_dir or Path(tmp) / "run", progress=False, log=False, **kwargs)
    return result, time.perf_counter() - start
