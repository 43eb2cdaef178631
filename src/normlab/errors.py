"""Errors a user can cause and fix.

Every ``NormlabError`` carries a one-line message that says what was wrong and what is allowed;
the CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations

import os
import signal
import sys
import time


class NormlabError(Exception):
    """A user-facing error: bad input, a missing file, an unknown name."""


class UnknownNameError(NormlabError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, tuple(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataUnavailableError(NormlabError):
    """A dataset file that can be neither found in the cache nor downloaded."""


def check_name(kind: str, name: str, valid) -> str:
    """Return ``name`` if it is in ``valid``, else raise ``UnknownNameError`` listing them."""
    if name not in valid:
        raise UnknownNameError(kind, name, sorted(valid))
    return name


# ------------------------------------------------------------------------------- fault points

FAULT_ENVIRONMENT = "NORMLAB_FAULT"
_fault_passages: dict[str, int] = {}  # fault points passed by this process, per phase and in all ("")


def fault_point(phase: str) -> None:
    """A named moment of a run (a training step, an evaluation chunk, a checkpoint or report write)
    where the reliability tests inject faults; nothing happens unless ``$NORMLAB_FAULT`` asks:

    - ``kill:N`` -- SIGKILL this process at the N-th fault point it passes;
      ``kill:N:PHASE`` -- at the N-th point of ``PHASE`` (the phase is printed to stderr first);
    - ``hold:PHASE`` -- at the first point of ``PHASE``, print ``normlab-hold: PHASE`` to stderr and
      wait (up to a minute) until a SIGINT/SIGTERM arrives, which is then handled as it would have
      been there, so a test can interrupt each phase deterministically.

    Phases: training, evaluation, checkpoint, write (an atomic replacement, new file complete),
    append (metrics), report (a section), animation (a frame).
    """
    plan = os.environ.get(FAULT_ENVIRONMENT)
    if not plan:
        return
    for key in ("", phase):
        _fault_passages[key] = _fault_passages.get(key, 0) + 1
    action, _, argument = plan.partition(":")
    if action == "kill":
        count, _, wanted = argument.partition(":")
        if wanted in ("", phase) and _fault_passages[wanted] == int(count):
            print(f"normlab-kill: {phase}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    elif action == "hold" and argument == phase:
        os.environ.pop(FAULT_ENVIRONMENT)  # once per process
        _hold_until_signal(phase)


def _hold_until_signal(phase: str) -> None:
    """Wait until SIGINT or SIGTERM arrives, then pass it on to the handler that was installed."""
    received = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def note(signum, frame):
        received.append(signum)

    for signum in previous:
        signal.signal(signum, note)
    try:
        print(f"normlab-hold: {phase}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)
