"""The benchmark harness: its timing against a fake clock, its report schema and its parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from benchmarks.harness import Timing, measure, round_robin

from benchmarks import harness


class FakeClock:
    """A clock that moves only when the timed function says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_measure_reports_the_median_and_iqr_of_known_durations_and_leaves_the_warm_up_out():
    clock, cpu = FakeClock(), FakeClock()
    durations = iter([100.0, 50.0, 3.0, 1.0, 2.0, 5.0, 4.0])  # two warm-up calls, then five repeats

    def work() -> None:
        seconds = next(durations)
        clock.now += seconds
        cpu.now += 2 * seconds  # two threads busy all along

    timing = measure(work, repeats=5, warmup=2, clock=clock, cpu_clock=cpu)
    assert timing.wall == [3.0, 1.0, 2.0, 5.0, 4.0]
    assert timing.median == 3.0
    assert (timing.quantile(0.25), timing.quantile(0.75), timing.iqr) == (2.0, 4.0, 2.0)
    summary = timing.summary("ms")
    assert summary["median_ms"] == 3000.0 and summary["iqr_ms"] == 2000.0
    assert (summary["min_ms"], summary["max_ms"], summary["cpu_median_ms"]) == (1000.0, 5000.0, 6000.0)
    assert summary["each_ms"] == [3000.0, 1000.0, 2000.0, 5000.0, 4000.0]


def test_measure_divides_each_repeat_by_its_number_of_calls():
    clock = FakeClock()

    def work() -> None:
        clock.now += 0.5

    timing = measure(work, repeats=3, number=4, warmup=0, clock=clock, cpu_clock=FakeClock())
    assert timing.wall == [0.5, 0.5, 0.5]


def test_quantiles_interpolate_like_numpy():
    timing = Timing(wall=[1.0, 2.0, 3.0, 4.0], cpu=[0.0] * 4)
    assert timing.median == 2.5
    assert timing.quantile(0.25) == pytest.approx(1.75)
    assert timing.iqr == pytest.approx(1.5)
    assert Timing(wall=[7.0], cpu=[7.0]).iqr == 0.0


def test_round_robin_takes_turns_and_runs_the_hook_between_rounds():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    timings = round_robin(fns, rounds=2, number=2, warmup=1, after_round=lambda: calls.append("|"))
    assert calls == ["a", "b", "a", "a", "b", "b", "|", "a", "a", "b", "b", "|"]
    assert set(timings) == {"a", "b"} and all(len(t.wall) == 2 for t in timings.values())


def toy(
    runs: tuple[Path, ...],
    steps: int = 3,
    scale: float | None = None,
    precision: Literal["fp32", "bf16"] = "fp32",
    compile: bool = False,
    variants: tuple[str, ...] = ("fp32",),
    overrides: tuple[str, ...] = (),
    seed: int = 0,
) -> dict:
    """A toy benchmark: its options come from this signature."""
    return {"runs": [str(r) for r in runs], "steps": steps, "scale": scale, "precision": precision}


@pytest.fixture
def with_toy(monkeypatch):
    monkeypatch.setattr(harness, "registry", lambda: {"toy": toy})
    return toy


def test_the_parser_reads_options_off_the_signature(with_toy):
    args = ["toy", "a", "b", "--steps", "5", "--precision", "bf16", "--compile", "--variants", "x", "y"]
    options = vars(harness.parser().parse_args([*args, "--set", "k=1", "--set", "j=2", "--seed", "7"]))
    assert options["runs"] == [Path("a"), Path("b")]
    assert (options["steps"], options["scale"]) == (5, None)
    assert (options["precision"], options["compile"]) == ("bf16", True)
    assert (options["variants"], options["overrides"], options["seed"]) == (["x", "y"], ["k=1", "j=2"], 7)
    with pytest.raises(SystemExit):
        harness.parser().parse_args(["toy", "a", "--precision", "fp64"])


def test_every_report_has_the_common_schema(with_toy, tmp_path, capsys):
    out = tmp_path / "sub" / "report.json"
    assert harness.main(["toy", "r1", "--steps", "2", "--seed", "3", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == report
    assert list(report) == ["name", "command", "machine", "date", "seed", "settings", "results"]
    assert report["name"] == "toy" and report["seed"] == 3
    assert report["command"] == "python -m benchmarks toy r1 --steps 2 --seed 3 --out " + str(out)
    assert report["settings"]["steps"] == 2 and report["results"]["steps"] == 2
    machine = report["machine"]
    for key in ("cpu", "cpu_flags", "cpu_count", "cores_usable", "torch", "python", "torch_threads"):
        assert key in machine
    assert set(machine["cpu_flags"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_a_failed_result_gives_exit_status_1(monkeypatch, capsys):
    monkeypatch.setattr(harness, "registry", lambda: {"fails": lambda: {"passed": False}})
    assert harness.main(["fails"]) == 1


def test_help_lists_every_registered_benchmark(capsys):
    with pytest.raises(SystemExit):
        harness.main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in harness.registry())
    assert len(harness.registry()) >= 15


def test_every_benchmark_is_listed_on_a_machine_without_the_serve_extra():
    # A GPU machine, say, with torch but no FastAPI: None in sys.modules makes its import fail.
    code = "import sys; sys.modules['fastapi'] = None; from benchmarks import harness as h; "
    code += "print(len(h.registry()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=harness.REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(harness.registry())


def test_a_child_process_returns_its_json():
    assert harness.in_subprocess(json.dumps, obj=[1, 2]) == "[1, 2]"
