"""Signals and interrupts of a run: SIGINT/SIGTERM turned into a stop between steps, and the
exceptions a stopped run or report ends with (``normlab`` exits 130 on both)."""

from __future__ import annotations

import signal
from pathlib import Path


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal; its store holds a checkpoint at the step it stopped."""

    def __init__(self, path: Path, step: int):
        super().__init__(f"interrupted at step {step}")
        self.path, self.step = path, step


class ReportInterrupted(KeyboardInterrupt):
    """Training finished, the report did not; run.json says ``"report": "interrupted"``."""

    training_complete = True

    def __init__(self, path: Path):
        super().__init__("report interrupted")
        self.path = path


class StopRequests:
    """Turns SIGINT/SIGTERM into a request the loop honours between steps.

    Stopping between steps keeps the state, the step counter and the pending metrics consistent,
    so the checkpoint written on the way out resumes exactly. A second signal stops at once
    (``KeyboardInterrupt`` from inside whatever is running). Outside the main thread signals stay
    with their owner and ``requested`` stays False.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
