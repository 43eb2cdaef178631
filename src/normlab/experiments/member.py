"""One member of a sweep: run it, resume it, or find it finished; the same code in this process,
in a worker process of the local pool and in a Ray task.

``run_member(config, path)`` looks at the member's directory first:

- finished (``run.json`` status completed or diverged): nothing to do, its stored result;
- a run with a valid checkpoint (interrupted, killed, failed): ``resume_experiment`` from it, to
  the same result as an uninterrupted run;
- a run without any valid checkpoint (killed before its first one), or a directory whose
  creation was cut short (no ``run.json``): removed and run afresh, which gives the same result;
- no directory: ``run_experiment``.

So running a member twice, or after any kill, never repeats finished work and never leaves a
half-made member looking finished: "finished" is only ever read from the member's own run.json,
which the runner writes last.

Worker processes (``python -c SHIM``, see ``sweep.py``) run ``main``: it prints
``normlab-progress STEP TOTAL`` lines on stdout for the parent's progress display and exits with
0 (finished), 130 (interrupted), 2 (a ``NormlabError``, one line on stderr) or 1 (anything else).
If its parent disappears (a killed sweep), it stops at its next progress point as if
interrupted, so no orphan keeps writing into a sweep that may be resumed elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from normlab.errors import NormlabError
from normlab.experiments.config import Config
from normlab.experiments.runner import RunResult, final_metrics, resume_experiment, run_experiment
from normlab.store import RunStore, is_run_dir, load_run
from normlab.store.files import is_temporary
from normlab.store.layout import CONFIG_FILE, METRICS_FILE, RUN_FILE

FINISHED = ("completed", "diverged")
PROGRESS_PREFIX = "normlab-progress"
EXIT_FINISHED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def stored_result(path: str | Path) -> RunResult:
    """The ``RunResult`` of a stored run, read from its run.json and metrics."""
    run = load_run(path)
    steps = int(run.info.get("steps_done") or 0)
    diverged = {str(k): int(v) for k, v in (run.info.get("diverged") or {}).items()}
    final = final_metrics(path) if run.status in FINISHED else {}
    return RunResult(path=Path(path), status=run.status, steps=steps, diverged=diverged, final=final)


def member_state(path: str | Path) -> str:
    """What a member directory holds: "missing", "unfinished" (a run to resume or restart) or
    the finished status ("completed", "diverged")."""
    path = Path(path)
    if not is_run_dir(path):
        return "missing"
    status = load_run(path).status
    return status if status in FINISHED else "unfinished"


def run_member(config: Config, path: str | Path, *, quiet: bool = True,
               on_progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Bring the member at ``path`` to a finished state (see the module docstring)."""
    path = Path(path)
    if is_run_dir(path):
        if load_run(path).status in FINISHED:
            return stored_result(path)
        valid, _damaged = RunStore.open(path).newest_valid_checkpoint()
        if valid is not None:
            return resume_experiment(path, quiet=quiet, on_progress=on_progress)
        shutil.rmtree(path)  # killed before its first checkpoint: nothing worth keeping
    elif path.exists():
        _remove_unfinished_creation(path)
    return run_experiment(config, run_dir=path, quiet=quiet, report=False, on_progress=on_progress)


def _remove_unfinished_creation(path: Path) -> None:
    """Remove a member directory that ``RunStore.create`` was killed in (no run.json yet); refuse
    to touch one holding anything else."""
    ours = {CONFIG_FILE, METRICS_FILE, RUN_FILE}
    entries = list(path.iterdir()) if path.is_dir() else [path]
    foreign = [p for p in entries if not (p.is_file() and (p.name in ours or is_temporary(p)))]
    if foreign:
        raise NormlabError(f"sweep member directory {path} exists but is not a run ({foreign[0].name}); "
                           "move it out of the sweep directory")
    shutil.rmtree(path)


def _progress_printer(parent: int) -> Callable[[int, int], None]:
    def report(step: int, total: int) -> None:
        if os.getppid() != parent:  # the sweep that started us is gone
            raise KeyboardInterrupt
        print(f"{PROGRESS_PREFIX} {step} {total}", flush=True)

    return report


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """Worker process: ``SWEEP_DIR INDEX PARENT_PID`` -> run member INDEX of that sweep."""
    from normlab.experiments.interrupts import RunInterrupted
    from normlab.experiments.sweep import load_sweep, member_configs

    sweep_dir, index, parent = Path(argv[0]), int(argv[1]), int(argv[2])
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops a member as cleanly as Ctrl-C
    try:
        content = load_sweep(sweep_dir)
        member = content["members"][index]
        config = member_configs(content)[index]
        run_member(config, sweep_dir / member["dir"], on_progress=_progress_printer(parent))
    except (RunInterrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except NormlabError as error:
        print(f"normlab: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    return EXIT_FINISHED
