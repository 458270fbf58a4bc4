"""Graceful stop: SIGTERM (a scheduler's pre-emption) and Ctrl-C finish the current step, write a
checkpoint and leave, instead of dying mid-epoch and losing the work since the last checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """Set by the signal handler; the loop checks it after every step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


class TrainingInterrupted(Exception):
    """Raised after the final checkpoint is written; carries the signal and the step reached."""

    def __init__(self, signum: int, step: int, run_dir: str) -> None:
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved. "
            f"Continue with: vaelab train --resume {run_dir}"
        )
        self.signum, self.step = signum, step


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Route SIGTERM and SIGINT to a ``StopRequest`` for the duration (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, _frame: object) -> None:
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
