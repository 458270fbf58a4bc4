"""Shared by the training tests: a stop request (as from SIGTERM) that arrives at a chosen step."""

from __future__ import annotations

import signal

import pytest

from vaelab.training import trainer as trainer_module
from vaelab.training.signals import StopRequest


@pytest.fixture
def stop_at_step(monkeypatch):
    """``stop_at_step(n)``: the training loop's n-th stop check sees SIGTERM, as if it arrived then."""

    def install(n: int) -> None:
        class StopAfter(StopRequest):
            def __init__(self):
                super().__init__()
                self.calls = 0

            def __bool__(self):
                self.calls += 1
                if self.calls == n:
                    self.signum = signal.SIGTERM
                return self.signum is not None

        class Ctx:
            def __enter__(self):
                return StopAfter()

            def __exit__(self, *exc):
                return False

        monkeypatch.setattr(trainer_module, "graceful_stop", Ctx)

    return install
