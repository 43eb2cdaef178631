"""Sweeps: one preset over a grid of settings and seeds (B18's learning-rate sweeps, seed spreads).

A sweep directory holds ``sweep.json`` (the preset, the base config, the grid, the seeds, and
each member with its settings, seed and status) and one ordinary run directory per grid point
and seed, so every member can be loaded, resumed and reported on its own, and
``normlab report SWEEP_DIR`` draws the sweep's figures.

Resuming. ``resume_sweep(DIR)`` (``normlab sweep --resume DIR``, or ``normlab run --resume DIR``)
brings every member that is not finished to the end: missing members are run, interrupted or
killed ones resume from their last checkpoint (``experiments.member.run_member``), finished ones
are left alone. A member's status in sweep.json is written (atomically) only after its own
run.json says it finished, and resuming trusts only run.json, so a killed sweep never has a
member marked completed that is partial. A lock file (``.sweep.lock``, ``flock``) keeps two
processes from running one sweep at once.

Executors:

- ``local``, ``jobs=1``: the members one after the other in this process;
- ``local``, ``jobs>1``: a pool of worker processes, at most ``jobs`` at once, each given
  ``threads_per_member`` cores of this machine (its CPU affinity on Linux, which also sizes XLA's
  thread pool); the default ``jobs`` is the usable cores // ``threads_per_member``. Workers run
  in their own session: Ctrl-C reaches this process, which passes it on to each worker once (a
  second Ctrl-C passes a second one: workers then stop at once), waits for them and records
  the interruption in sweep.json;
- ``vectorized`` (``normlab sweep --vectorize``): every member in this process, trained together
  in one compiled step vmapped over the members (``experiments.vectorized``: dense models, members
  differing only in seed and lr; checked before anything is written). Resuming one: a member
  with a run directory (interrupted, killed, failed) continues alone from its last checkpoint
  (``run_member``: the checkpoints have the standalone structure), which gives the result of
  its run alone, equal to the vectorized one to float32 rounding; the members never started
  train vectorized together;
- ``ray``: one Ray task per member (``ray.init(address)``, or the Ray instance already started
  in this process); results land in the same directory, which every worker must see (a shared
  filesystem). A task whose worker dies is retried by Ray (``max_retries``) and, being
  ``run_member``, resumes from the member's last checkpoint.

One progress line per member: the members' bars (or, without a terminal, one line when each
finishes) with its status, time and final test accuracies.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError
from normlab.experiments.config import Config, apply_overrides, current_setting_key, from_dict, parse_value, to_dict
from normlab.experiments.interrupts import RunInterrupted
from normlab.experiments.member import (
    EXIT_FINISHED,
    FINISHED,
    PROGRESS_PREFIX,
    member_state,
    run_member,
    stored_result,
)
from normlab.experiments.runner import RunResult
from normlab.store import check_output_root, is_run_dir, load_run, new_run_dir
from normlab.store.files import read_json, write_json_atomically
from normlab.store.writer import now_iso

SWEEP_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
EXECUTORS = ("local", "ray", "vectorized")
# A worker process: set its CPU affinity before anything imports JAX, then run one member.
_WORKER_SHIM = (
    "import os, sys\n"
    "cores = [int(c) for c in sys.argv[1].split(',') if c]\n"
    "if cores and hasattr(os, 'sched_setaffinity'):\n"
    "    os.sched_setaffinity(0, cores)\n"
    "from normlab.experiments.member import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


@dataclass(frozen=True)
class SweepPoint:
    """One member of a sweep: its settings, seed and directory name."""

    settings: tuple[tuple[str, str], ...]
    seed: int

    @property
    def name(self) -> str:
        parts = [f"{key}={value if value != '' else 'none'}" for key, value in self.settings] + [f"seed={self.seed}"]
        return "-".join(part.replace("/", "_").replace(",", "+") for part in parts)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C or SIGTERM; ``normlab sweep --resume PATH`` continues it."""

    sweep = True

    def __init__(self, path: Path):
        super().__init__(f"sweep {path} interrupted")
        self.path = path


def parse_grid(assignments: list[str]) -> dict[str, list[str]]:
    """``["lr=0.01,0.1", "networks=none+batch"]`` -> {key: [value texts]}, each value type-checked.

    Values are separated by commas; for tuple-valued settings write the tuple's items joined with
    ``+`` (``networks=none+batch,none+noisy``). A renamed setting's old key is read as its
    new one (``current_setting_key``), so the members are named in today's spelling; an old pair
    setting (two settings now) keeps its key and is split when a member is configured.
    """
    grid = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not text:
            raise NormlabError(f"--grid expects key=value1,value2,...; got {assignment!r}")
        key = current_setting_key(key.strip())
        values = [value.replace("+", ",") for value in text.split(",") if value]
        for value in values:
            parse_value(key, value)  # fails early with the config's one-line errors
        grid[key] = values
    return grid


def sweep_points(grid: dict[str, list[str]], seeds: list[int], variants: list[dict[str, str]] | None = None
                 ) -> list[SweepPoint]:
    """Every variant (a dict of settings; default: one empty variant) x every grid point x every
    seed, in that order; a variant's settings come first in a member's settings and name."""
    keys = list(grid)
    combos = list(itertools.product(*(grid[key] for key in keys))) if keys else [()]
    return [SweepPoint(tuple(variant.items()) + tuple(zip(keys, combo)), seed)
            for variant in (variants or [{}]) for combo in combos for seed in seeds]


def member_config(base: Config, point: SweepPoint) -> Config:
    """The member's config: the base with the point's settings, its seed as both seeds, and no
    report of its own (the sweep reports its members together)."""
    config = apply_overrides(base, [f"{key}={value}" for key, value in point.settings])
    return replace(config, seed=point.seed, data_seed=point.seed, report=False)


def member_configs(content: dict) -> list[Config]:
    """Every member's config from a sweep.json ``content`` (validated)."""
    base = from_dict(content["base_config"])
    return [member_config(base, SweepPoint(tuple(member["settings"].items()), member["seed"]))
            for member in content["members"]]


def default_jobs(threads_per_member: int = 1) -> int:
    """Members at once on this machine: its usable cores // ``threads_per_member`` (at least 1)."""
    return max(1, len(_usable_cores()) // max(1, threads_per_member))


def _usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run_sweep(
    base: Config,
    grid: dict[str, list[str]],
    seeds: list[int],
    *,
    out: str | Path = "runs",
    quiet: bool = False,
    executor: str = "local",
    jobs: int | None = None,
    threads_per_member: int = 1,
    address: str | None = None,
    variants: list[dict[str, str]] | None = None,
    label: str | None = None,
    extra: dict | None = None,
) -> tuple[Path, list[RunResult]]:
    """Run every grid point for every seed (and every variant: a dict of settings, see
    ``sweep_points``) into a new sweep directory under ``out``, named ``<time>-<label>``
    (default ``sweep-<preset>``); returns the directory and the members' results (in sweep.json
    order). ``extra`` is recorded in sweep.json as it is (a study's record)."""
    if not seeds:
        raise NormlabError("a sweep needs at least one seed")
    _check_executor(executor, jobs, threads_per_member)
    points = sweep_points(grid, seeds, variants)
    content = {
        "format": 1,
        "preset": base.preset,
        "base_config": to_dict(base),
        "grid": grid,
        "variants": variants or [],
        "seeds": seeds,
        "members": [{"dir": point.name, "settings": dict(point.settings), "seed": point.seed, "status": "pending"}
                    for point in points],
        "status": "running",
        "created": now_iso(),
        **(extra or {}),
    }
    _check_members(content, executor)  # validate every member before anything is written
    check_output_root(out)
    directory = new_run_dir(Path(out), label or f"sweep-{base.preset}")
    write_json_atomically(directory / SWEEP_FILE, content)
    return directory, _execute(directory, content, quiet=quiet, executor=executor, jobs=jobs,
                               threads_per_member=threads_per_member, address=address)


def resume_sweep(directory: str | Path, *, quiet: bool = False, executor: str = "local", jobs: int | None = None,
                 threads_per_member: int = 1, address: str | None = None) -> tuple[Path, list[RunResult]]:
    """Complete the sweep in ``directory``: run missing members, resume unfinished ones from
    their checkpoints, leave finished ones (see the module docstring)."""
    _check_executor(executor, jobs, threads_per_member)
    directory = Path(directory)
    content = load_sweep(directory)
    _check_members(content, executor)
    return directory, _execute(directory, content, quiet=quiet, executor=executor, jobs=jobs,
                               threads_per_member=threads_per_member, address=address)


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def load_sweep(path: str | Path) -> dict:
    """The ``sweep.json`` of a sweep directory."""
    file = Path(path) / SWEEP_FILE
    if not file.is_file():
        raise NormlabError(f"{path} is not a sweep directory (no {SWEEP_FILE})")
    return read_json(file)


def _check_members(content: dict, executor: str) -> None:
    """Every member's config is valid and, for the ``vectorized`` executor, the members can train
    in one vmapped step (``vectorized.check_members``: one line naming the setting)."""
    configs = member_configs(content)
    if executor == "vectorized":
        from normlab.experiments.vectorized import check_members

        check_members(configs)


def _check_executor(executor: str, jobs: int | None, threads_per_member: int) -> None:
    if executor not in EXECUTORS:
        raise NormlabError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if executor == "vectorized" and (jobs is not None or threads_per_member != 1):
        raise NormlabError("vectorized members train together in this process: give no --jobs or "
                           "--threads-per-member with --vectorize")
    if jobs is not None and jobs < 1:
        raise NormlabError(f"--jobs must be >= 1; got {jobs}")
    if threads_per_member < 1:
        raise NormlabError(f"--threads-per-member must be >= 1; got {threads_per_member}")


# ------------------------------------------------------------------------------- running members


def _execute(directory: Path, content: dict, *, quiet: bool, executor: str, jobs: int | None,
             threads_per_member: int, address: str | None) -> list[RunResult]:
    members = content["members"]
    configs = member_configs(content)
    jobs = jobs or default_jobs(threads_per_member)
    with _sweep_lock(directory):
        results: dict[int, RunResult] = {}
        todo = []
        for index, member in enumerate(members):
            state = member_state(directory / member["dir"])
            if state in FINISHED:
                results[index] = stored_result(directory / member["dir"])
                member["status"] = state
            else:
                todo.append(index)
                member["status"] = "pending" if state == "missing" else "unfinished"
        content.update(status="running", executor=executor, jobs=jobs if executor == "local" else 1,
                       updated=now_iso())
        content.pop("interrupted_at", None)
        write_json_atomically(directory / SWEEP_FILE, content)
        display = _Display(members, quiet=quiet, done=len(results))

        def finished(index: int, result: RunResult, seconds: float) -> None:
            results[index] = result
            members[index]["status"] = result.status
            write_json_atomically(directory / SWEEP_FILE, content)  # after the member's run.json
            display.finished(index, result, seconds)

        try:
            if executor == "ray":
                _run_on_ray(directory, members, configs, todo, finished, display, threads_per_member, address)
            elif executor == "vectorized":
                _run_vectorized(directory, members, configs, todo, finished, display, quiet)
            elif jobs == 1:
                _run_here(directory, members, configs, todo, finished, display, quiet)
            else:
                _run_in_pool(directory, members, todo, finished, display, jobs, threads_per_member)
        except KeyboardInterrupt:
            for index in todo:
                if index not in results:
                    members[index]["status"] = _status_on_disk(directory / members[index]["dir"])
            content.update(status="interrupted", interrupted_at=now_iso())
            write_json_atomically(directory / SWEEP_FILE, content)
            display.close()
            raise SweepInterrupted(directory) from None
        display.close()
        failed = [index for index in range(len(members)) if results[index].status not in FINISHED]
        content.update(status="failed" if failed else "completed", updated=now_iso())
        write_json_atomically(directory / SWEEP_FILE, content)
    return [results[index] for index in range(len(members))]


def _status_on_disk(path: Path) -> str:
    return load_run(path).status if is_run_dir(path) else "pending"


def _failed_result(path: Path, error: str) -> RunResult:
    if is_run_dir(path):
        result = stored_result(path)
        return replace(result, status="failed" if result.status not in FINISHED else result.status)
    return RunResult(path=path, status="failed", steps=0, diverged={})


def _run_here(directory, members, configs, todo, finished, display, quiet) -> None:
    """Members one after the other in this process (each with its own progress bar)."""
    for index in todo:
        path = directory / members[index]["dir"]
        display.started(index)
        began = time.monotonic()
        try:
            result = run_member(configs[index], path, quiet=quiet)
        except RunInterrupted:
            raise
        except Exception as error:  # one failing member does not cost the others
            result = _failed_result(path, _reported_failure(error, f"member {members[index]['dir']}"))
        finished(index, result, time.monotonic() - began)


def _reported_failure(error: Exception, what: str) -> str:
    """Print why ``what`` failed -- a ``NormlabError`` in one line, anything else (a bug) with its
    traceback -- and return the text its status records."""
    if isinstance(error, NormlabError):
        print(f"normlab: error in {what}: {error}", file=sys.stderr, flush=True)
        return str(error)
    import traceback

    traceback.print_exc()
    return f"{type(error).__name__}: {error}"


def _run_vectorized(directory, members, configs, todo, finished, display, quiet) -> None:
    """The members never started in one vmapped step; then, one after the other, the members
    that have a run directory, each continuing alone from its checkpoint (see the module
    docstring)."""
    from normlab.experiments.vectorized import run_vectorized

    fresh = [index for index in todo if not (directory / members[index]["dir"]).exists()]
    if fresh:
        paths = [directory / members[index]["dir"] for index in fresh]
        began = time.monotonic()
        try:
            results = run_vectorized([configs[index] for index in fresh], paths, quiet=quiet, report=False)
        except RunInterrupted:
            raise
        except Exception as error:  # one step for all: they fail together
            text = _reported_failure(error, "the vectorized members")
            results = [_failed_result(path, text) for path in paths]
        for index, result in zip(fresh, results):
            finished(index, result, time.monotonic() - began)
    _run_here(directory, members, configs, [index for index in todo if index not in fresh], finished, display,
              quiet)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    fd: int  # its stdout (progress lines)
    slot: int
    began: float
    buffer: bytes = b""


def _worker_env(threads_per_member: int) -> dict:
    """The environment of a worker: this normlab first on the path, XLA single-threaded when a
    member gets one core (its thread pool then matches its affinity)."""
    import normlab

    env = dict(os.environ)
    source = str(Path(normlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([source, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    if threads_per_member == 1:
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), "--xla_cpu_multi_thread_eigen=false"]))
    return env


def _run_in_pool(directory, members, todo, finished, display, jobs, threads_per_member) -> None:
    """At most ``jobs`` worker processes at once, each pinned to its own ``threads_per_member`` cores."""
    cores = _usable_cores()
    slots = [cores[(k * threads_per_member) % len(cores):][:threads_per_member] for k in range(jobs)]
    free = list(range(jobs))
    queue = list(todo)
    running: dict[int, _Worker] = {}  # stdout fd -> worker
    selector = selectors.DefaultSelector()
    env = _worker_env(threads_per_member)
    signals_sent = 0

    def start(index: int) -> None:
        slot = free.pop(0)
        with warnings.catch_warnings():  # the child execs at once: JAX's threads are not needed there
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_SHIM, ",".join(map(str, slots[slot])), str(directory), str(index),
                 str(os.getpid())],
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        assert process.stdout is not None
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        running[fd] = _Worker(index, process, fd, slot, time.monotonic())
        selector.register(process.stdout, selectors.EVENT_READ)
        display.started(index)

    def read(worker: _Worker) -> None:
        assert worker.process.stdout is not None
        with contextlib.suppress(BlockingIOError):
            while chunk := worker.process.stdout.read(65536):
                worker.buffer += chunk
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            parts = line.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == PROGRESS_PREFIX:
                display.progress(worker.index, int(parts[1]), int(parts[2]))

    def reap(worker: _Worker) -> None:
        read(worker)
        assert worker.process.stdout is not None
        selector.unregister(worker.process.stdout)
        worker.process.stdout.close()
        del running[worker.fd]
        free.append(worker.slot)
        free.sort()
        path = directory / members[worker.index]["dir"]
        code = worker.process.returncode
        if code == EXIT_FINISHED and is_run_dir(path):
            result = stored_result(path)
        else:
            result = _failed_result(path, f"worker exited with status {code}")
            if code == 130 or code == -signal.SIGINT:
                result = replace(result, status=_status_on_disk(path))
        finished(worker.index, result, time.monotonic() - worker.began)

    def poll() -> None:
        for key, _ in selector.select(timeout=0.5):
            read(running[key.fd])
        for worker in list(running.values()):
            if worker.process.poll() is not None:
                reap(worker)

    try:
        while queue or running:
            while queue and free:
                start(queue.pop(0))
            poll()
    except KeyboardInterrupt:
        while running:
            try:
                if signals_sent < 2:
                    for worker in running.values():
                        with contextlib.suppress(ProcessLookupError):
                            worker.process.send_signal(signal.SIGINT)
                    signals_sent += 1
                while running:
                    poll()
            except KeyboardInterrupt:  # a second Ctrl-C: pass it on, the workers stop at once
                continue
        raise


def _run_on_ray(directory, members, configs, todo, finished, display, threads_per_member, address) -> None:
    """One Ray task per member; each writes its own run directory (a shared filesystem is assumed)."""
    try:
        import ray
    except ImportError:
        raise NormlabError("--ray needs the ray extra: pip install 'normlab[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address) if address else ray.init()

    remote = ray.remote(num_cpus=threads_per_member, max_retries=3)(_ray_member)
    sweep_dir = str(Path(directory).resolve())
    began = {}
    refs = {}
    for index in todo:
        refs[remote.remote(sweep_dir, index)] = index
        began[index] = time.monotonic()
        display.started(index)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                index = refs[ref]
                path = directory / members[index]["dir"]
                try:
                    ray.get(ref)
                    result = stored_result(path)
                except Exception as error:  # the task failed (after its retries)
                    result = _failed_result(path, str(error))
                finished(index, result, time.monotonic() - began[index])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task: the member checkpoints and stops
        with contextlib.suppress(Exception):
            ray.wait(pending, num_returns=len(pending), timeout=60)
        raise


def _ray_member(sweep_dir: str, index: int) -> str:
    """A Ray task: run (or resume) member ``index`` of the sweep in ``sweep_dir``; its status."""
    content = load_sweep(sweep_dir)
    config = member_configs(content)[index]
    return run_member(config, Path(sweep_dir) / content["members"][index]["dir"]).status


# ------------------------------------------------------------------------------- lock, display


@contextlib.contextmanager
def _sweep_lock(directory: Path) -> Iterator[None]:
    """Hold ``.sweep.lock`` (``flock``; released by the kernel if this process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(directory / LOCK_FILE, "a+") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NormlabError(f"sweep {directory} is being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


class _Display:
    """One line per member: live bars on a terminal, else a line as each member finishes."""

    def __init__(self, members: list[dict], *, quiet: bool, done: int):
        self.members, self.quiet = members, quiet
        self.count, self.done = len(members), done
        self._bar = None
        self._tasks: dict[int, Any] = {}  # member index -> rich TaskID
        if not quiet and done:
            self._print(f"sweep: {done} of {self.count} members already finished; running the other "
                        f"{self.count - done}")
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"), transient=False)

    def _print(self, text: str) -> None:
        print(text, flush=True)

    def started(self, index: int) -> None:
        if self._bar is not None:
            if not self._bar.live.is_started:
                self._bar.start()
            self._tasks[index] = self._bar.add_task(self.members[index]["dir"], total=None, status="running")

    def progress(self, index: int, step: int, total: int) -> None:
        if self._bar is not None and index in self._tasks:
            self._bar.update(self._tasks[index], completed=step, total=total)

    def finished(self, index: int, result: RunResult, seconds: float) -> None:
        self.done += 1
        accuracies = ", ".join(f"{network} {100 * values['test_accuracy']:.2f}%"
                               for network, values in result.final.items()
                               if isinstance(values, dict) and values.get("test_accuracy") is not None)
        status = result.status + (f" in {seconds:.0f} s" if seconds >= 1 else "") + (
            f" ({accuracies})" if accuracies else "")
        if self._bar is not None and index in self._tasks:
            task = self._tasks[index]
            self._bar.update(task, status=status, completed=result.steps or None)
        elif not self.quiet:
            self._print(f"[{self.done}/{self.count}] {self.members[index]['dir']}: {status}")

    def close(self) -> None:
        if self._bar is not None and self._bar.live.is_started:
            self._bar.stop()
