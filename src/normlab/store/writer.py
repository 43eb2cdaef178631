"""``RunStore``: the writing side of a run directory (create, append, flush, checkpoint, resume).

Durability contract: after ``flush()`` returns, everything appended before it is on disk, and a
process killed at any instant afterwards (SIGKILL included) leaves a directory that
``load_run`` reads completely. Files are either appended in fsynced whole lines (``metrics.csv``)
or replaced atomically (everything else).
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import os
from collections.abc import Iterator
from pathlib import Path

from normlab.errors import NormlabError
from normlab.store import checkpoints, layout, metrics, probes
from normlab.store.files import (
    append_durably,
    encode_json,
    fsync_directory,
    is_temporary,
    read_json,
    replacing,
    write_atomically,
    write_bytes_atomically,
)

STATUSES = ("running", "completed", "interrupted", "failed", "diverged")
TERMINAL_STATUSES = frozenset(STATUSES) - {"running"}
# run.json keys the store manages; the info of ``set_status`` and ``update_info`` may not overwrite them.
_MANAGED_RUN_KEYS = frozenset({"format", "status", "start_time", "end_time", "provenance"})


def now_iso() -> str:
    """The current local time, ISO 8601 with UTC offset, to the second."""
    return _datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def check_output_root(root) -> Path:
    """``root`` if run directories can be made under it, else a one-line ``NormlabError``.

    Checked before a run starts: a ``--out`` that is a file, lies under a file, or is not writable
    is refused with one line instead of failing after the work began.
    """
    root = Path(root)
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == root else f"lies under the file {existing}"
        raise NormlabError(f"cannot make run directories under {root}: it {where}; pass a directory to --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NormlabError(f"cannot make run directories under {root}: {existing} is not writable")
    return root


def new_run_dir(root, name: str) -> Path:
    """Create and return a fresh empty directory ``<root>/<YYYYmmdd-HHMMSS>-<name>``.

    If that name is taken, ``-2``, ``-3``, ... is appended. The directory is created here (it is
    empty, so ``RunStore.create`` accepts it) so that two runs started in the same second, even in
    parallel processes, can never be given the same directory.
    """
    layout.check_component_name("run", name)
    root = check_output_root(root)
    base = f"{_datetime.datetime.now():%Y%m%d-%H%M%S}-{name}"
    for attempt in range(1, 10_000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:  # a path the checks could not foresee (read-only file system, ...)
            raise NormlabError(f"cannot make run directories under {root}: {error.strerror}") from None
        return candidate
    raise NormlabError(f"could not find a free run directory name for {base} in {root}")


class RunStore:
    """A run directory opened for writing. Make one with ``create`` (new) or ``open`` (resume)."""

    def __init__(self, path: Path, metric_columns: list[str], *, with_kind: bool = True):
        """Use ``RunStore.create`` or ``RunStore.open``; this only sets up empty buffers."""
        self.path = Path(path)
        self.metric_columns = list(metric_columns)
        self._with_kind = with_kind  # False for a run written before metrics.csv had a kind column
        self._metric_rows: list[tuple[int, bytes]] = []  # (step, csv line) awaiting flush
        self._probe_buffers: dict[tuple[str, str], probes.ProbeBuffer] = {}
        # Last step on disk per (probe, network), read lazily from chunk names.
        self._stored_probe_steps: dict[tuple[str, str], int | None] = {}

    # ---------------------------------------------------------------- creating and opening

    @classmethod
    def create(cls, directory, *, config: dict, provenance: dict, metric_columns: list[str]) -> RunStore:
        """Start a new run in ``directory`` (created; it must not exist or must be empty).

        Writes ``config.json``, the ``metrics.csv`` header and, last, ``run.json`` with status
        ``"running"``; a directory whose creation was interrupted therefore is not a run dir.
        """
        path = Path(directory)
        columns = metrics.check_metric_columns(metric_columns)
        # Encode everything first: a config that is not JSON-able must not leave a half-made run.
        config_bytes = encode_json(config)
        run_bytes = encode_json(
            {
                "format": layout.FORMAT_VERSION,
                "status": "running",
                "start_time": now_iso(),
                "provenance": provenance,
            }
        )
        _make_empty_directory(path)
        write_bytes_atomically(path / layout.CONFIG_FILE, config_bytes)
        write_bytes_atomically(path / layout.METRICS_FILE, metrics.header_line(columns))
        write_bytes_atomically(path / layout.RUN_FILE, run_bytes)
        fsync_directory(path.parent)
        return cls(path, columns)

    @classmethod
    def open(cls, directory) -> RunStore:
        """Reopen an existing run to resume or append to it.

        Repairs what a kill can leave behind: the temporary files of interrupted atomic writes are
        removed, and a final ``metrics.csv`` line without its newline is cut off, so the next
        append starts on a fresh line.
        """
        path = layout.require_run_dir(directory)
        _remove_temporary_files(path)
        header = _repair_metrics_file(path / layout.METRICS_FILE)
        columns = metrics.header_columns(header)
        if columns[: len(metrics.KEY_COLUMNS)] != list(metrics.KEY_COLUMNS):
            raise NormlabError(f"{path / layout.METRICS_FILE} does not start with the columns step,network")
        rest = columns[len(metrics.KEY_COLUMNS) :]
        with_kind = rest[:1] == [metrics.KIND_COLUMN]
        return cls(path, rest[1:] if with_kind else rest, with_kind=with_kind)

    def load(self):
        """The run as ``load_run`` reads it from disk (buffered, unflushed data is not included)."""
        from normlab.store.reader import load_run

        return load_run(self.path)

    @property
    def config(self) -> dict:
        """The resolved config written at creation."""
        return read_json(self.path / layout.CONFIG_FILE)

    @property
    def info(self) -> dict:
        """The content of ``run.json``: format, status, times, provenance and status info."""
        return read_json(self.path / layout.RUN_FILE)

    # ---------------------------------------------------------------- buffered measurements

    def append_metrics(self, rows: list[dict]) -> None:
        """Buffer metric rows (each needs ``step`` and ``network``, may have ``kind`` ("train" or
        "eval"); other keys must be columns).

        Rows are validated now, so a bad row fails here rather than at the next flush.
        """
        formatted = [metrics.format_row(row, self.metric_columns, with_kind=self._with_kind) for row in rows]
        self._metric_rows.extend(formatted)

    def append_probe(self, name: str, network: str, step: int, arrays: dict) -> None:
        """Buffer one step of probe ``name`` for ``network``.

        Steps must increase per (probe, network), also across a resume: resuming therefore
        requires ``truncate_after`` first, which is what makes a resumed store equal an
        uninterrupted one.
        """
        key = (layout.check_component_name("probe", name), layout.check_component_name("network", network))
        step = metrics.as_step(step)
        last = self._last_probe_step(key)
        if last is not None and step <= last:
            raise ValueError(
                f"probe {name!r} of {network!r}: step {step} is not after the last recorded step {last} "
                "(when resuming, call truncate_after(checkpoint_step) first)"
            )
        converted = probes.as_arrays(arrays)  # validate before a buffer exists: a bad call leaves no trace
        self._probe_buffers.setdefault(key, probes.ProbeBuffer()).add(step, converted)

    def set_probe_meta(self, name: str, meta: dict) -> None:
        """Write probe ``name``'s metadata (bn mode, layer names, bin edges, ...) now, atomically."""
        directory = self.path / layout.PROBES_DIR / layout.check_component_name("probe", name)
        data = encode_json(meta)
        directory.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(directory / layout.PROBE_META_FILE, data)

    def flush(self) -> None:
        """Write every buffered metric row and probe step to disk, durably.

        Metric rows are appended to ``metrics.csv`` in one fsynced write; each (probe, network)
        gets one new chunk. A buffer is cleared only once its write succeeded.
        """
        if self._metric_rows:
            append_durably(self.path / layout.METRICS_FILE, b"".join(line for _, line in self._metric_rows))
            self._metric_rows.clear()
        for key, buffer in list(self._probe_buffers.items()):
            probes.write_chunk(self._probe_dir(*key), buffer.stacked())
            self._stored_probe_steps[key] = buffer.steps[-1]
            del self._probe_buffers[key]

    def close(self) -> None:
        """Flush; the store holds no open files, so this is all closing needs to do."""
        self.flush()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self, step: int, tree, *, extra: dict | None = None, keep: int = 2) -> None:
        """Save ``tree`` (a pytree of arrays) as checkpoint ``step``; keep the newest ``keep``.

        Flushes first, so when a checkpoint exists every measurement up to its step is on disk:
        resuming from it then loses nothing. ``extra`` is a JSON-able dict stored beside the
        checkpoint (data position, rng info, divergence flags, ...).
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        step = metrics.as_step(step)
        self.flush()
        directory = self.path / layout.CHECKPOINTS_DIR
        checkpoints.save(directory, step, tree, extra)
        for old_step in self.checkpoint_steps()[:-keep]:
            checkpoints.delete(directory, old_step)

    def restore_checkpoint(self, target_tree, *, step: int | None = None):
        """``(step, tree)`` of checkpoint ``step`` (default: the latest), shaped like ``target_tree``.

        Leaves come back as NumPy arrays (typed PRNG keys as keys); put them on device with
        ``jax.numpy.asarray`` or ``nnx.update``.
        """
        step = self._existing_checkpoint_step(step)
        path = self.path / layout.CHECKPOINTS_DIR / layout.checkpoint_name(step)
        return checkpoints.decode_checkpoint(path.read_bytes(), target_tree, source=path)

    def newest_valid_checkpoint(self) -> tuple[int | None, list[tuple[Path, str]]]:
        """``(step, damaged)``: the newest checkpoint whose checksums verify (None if none does),
        and ``(path, reason)`` of every newer one that does not."""
        directory = self.path / layout.CHECKPOINTS_DIR
        damaged: list[tuple[Path, str]] = []
        for step in reversed(self.checkpoint_steps()):
            reason = checkpoints.damage(directory, step)
            if reason is None:
                return step, damaged
            damaged.append((directory / layout.checkpoint_name(step), reason))
        return None, damaged

    def checkpoint_extra(self, step: int | None = None) -> dict:
        """The ``extra`` dict saved with checkpoint ``step`` (default: the latest)."""
        step = self._existing_checkpoint_step(step)
        return checkpoints.load_extra(self.path / layout.CHECKPOINTS_DIR, step)

    def checkpoint_steps(self) -> list[int]:
        """Steps of the stored checkpoints, oldest first."""
        return layout.checkpoint_steps(self.path)

    def latest_checkpoint_step(self) -> int | None:
        """The step of the newest checkpoint, or None if there is none."""
        steps = self.checkpoint_steps()
        return steps[-1] if steps else None

    # ---------------------------------------------------------------- resuming

    def truncate_after(self, step: int, *, keep_checkpoints: bool = False) -> None:
        """Forget everything recorded after ``step``: metric rows, probe steps, checkpoints.

        ``keep_checkpoints=True`` leaves the checkpoints alone: a resume from checkpoint ``s``
        truncates the measurements after ``s - 1`` (step ``s`` is measured again) but must keep
        checkpoint ``s`` so that a second kill before the next checkpoint loses nothing.

        Call it with the restored checkpoint's step when resuming: the steps re-run after it are
        then recorded once, and the store ends up as an uninterrupted run would have left it.
        Affected files are rewritten atomically, and running it twice is harmless, so a kill
        during truncation is repaired by the next resume. ``truncate_after(-1)`` empties the run.
        """
        step = metrics.as_integer(step)
        self._metric_rows = [(row_step, line) for row_step, line in self._metric_rows if row_step <= step]
        for buffer in self._probe_buffers.values():
            buffer.drop_after(step)
        self._probe_buffers = {key: buffer for key, buffer in self._probe_buffers.items() if buffer.steps}
        self._truncate_metrics_file(step)
        for probe in layout.probe_names(self.path):
            for network in layout.probe_networks(self.path, probe):
                probes.truncate_chunks(self._probe_dir(probe, network), step)
        for checkpoint_step in [] if keep_checkpoints else self.checkpoint_steps():
            if checkpoint_step > step:
                checkpoints.delete(self.path / layout.CHECKPOINTS_DIR, checkpoint_step)
        self._stored_probe_steps.clear()

    # ---------------------------------------------------------------- status

    def set_status(self, status: str, **info) -> None:
        """Record the run's status in ``run.json`` (atomically) with any JSON-able ``info``.

        Terminal statuses (completed, interrupted, failed, diverged) also record ``end_time``;
        going back to ``running`` (a resume) removes it.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        run_info = {**self.info, **_checked_info(info), "status": status}
        if status in TERMINAL_STATUSES:
            run_info["end_time"] = now_iso()
        else:
            run_info.pop("end_time", None)
        write_bytes_atomically(self.path / layout.RUN_FILE, encode_json(run_info))

    def update_info(self, **info) -> None:
        """Merge JSON-able ``info`` into ``run.json`` (atomically) without changing the status.

        For progress a reader may want before the run ends (steps done, divergence so far).
        """
        run_info = {**self.info, **_checked_info(info)}
        write_bytes_atomically(self.path / layout.RUN_FILE, encode_json(run_info))

    # ---------------------------------------------------------------- other files

    def path_for(self, relpath) -> Path:
        """The path of ``relpath`` inside the run (parent directories created).

        For writers that need a file name (matplotlib, ffmpeg); prefer ``replacing`` or the
        ``write_*`` methods, which are atomic.
        """
        path = layout.resolve_user_path(self.path, relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def replacing(self, relpath) -> Iterator[Path]:
        """Yield a temporary path (same suffix) that atomically becomes ``relpath`` on success.

        ``with store.replacing("figures/loss.png") as tmp: fig.savefig(tmp)``
        """
        with replacing(self.path_for(relpath)) as tmp:
            yield tmp

    def write_bytes(self, relpath, data: bytes) -> Path:
        """Atomically write ``data`` to ``relpath`` inside the run; returns the path."""
        path = self.path_for(relpath)
        write_bytes_atomically(path, data)
        return path

    def write_text(self, relpath, text: str) -> Path:
        """Atomically write UTF-8 ``text`` to ``relpath`` inside the run; returns the path."""
        return self.write_bytes(relpath, text.encode("utf-8"))

    def write_json(self, relpath, obj) -> Path:
        """Atomically write ``obj`` as JSON to ``relpath`` inside the run; returns the path."""
        return self.write_bytes(relpath, encode_json(obj))

    def write_arrays(self, relpath, arrays: dict) -> Path:
        """Atomically write ``arrays`` (name -> array of numbers) as an ``.npz`` at ``relpath``.

        For small groups written once, such as the run's ``start/`` views; read back with
        ``Run.read_arrays``. Names follow the probe rule (identifiers joined by dots).
        """
        path = self.path_for(relpath)
        converted = probes.as_arrays(arrays)
        write_atomically(path, lambda file: probes.write_npz(file, converted))
        return path

    # ---------------------------------------------------------------- helpers

    def _probe_dir(self, probe: str, network: str) -> Path:
        return self.path / layout.PROBES_DIR / probe / network

    def _last_probe_step(self, key: tuple[str, str]) -> int | None:
        """The last step of (probe, network) buffered or on disk."""
        buffer = self._probe_buffers.get(key)
        if buffer is not None and buffer.steps:
            return buffer.steps[-1]
        if key not in self._stored_probe_steps:
            self._stored_probe_steps[key] = probes.last_stored_step(self._probe_dir(*key))
        return self._stored_probe_steps[key]

    def _existing_checkpoint_step(self, step: int | None) -> int:
        """``step`` (default: the latest) if that checkpoint exists, else a one-line error."""
        steps = self.checkpoint_steps()
        if step is None and steps:
            return steps[-1]
        if step is not None and step in steps:
            return step
        wanted = "checkpoint" if step is None else f"checkpoint {step}"
        raise NormlabError(f"{self.path} has no {wanted}; stored checkpoints: {steps or 'none'}")

    def _truncate_metrics_file(self, step: int) -> None:
        """Rewrite ``metrics.csv`` without rows after ``step`` (only if there are any)."""
        path = self.path / layout.METRICS_FILE
        data = metrics.read_metrics_bytes(path)
        kept = metrics.keep_rows_up_to(data, step)
        if kept != data:
            write_bytes_atomically(path, kept)


def _checked_info(info: dict) -> dict:
    """``info`` if it overwrites none of the run.json keys the store manages."""
    clashes = sorted(_MANAGED_RUN_KEYS & set(info))
    if clashes:
        raise ValueError(f"run info may not overwrite {clashes}; the store manages them")
    return info


def _make_empty_directory(path: Path) -> None:
    """Create ``path`` (and parents); an existing directory is accepted only if it is empty."""
    if path.exists():
        if not path.is_dir():
            raise NormlabError(f"cannot create a run in {path}: it is a file")
        if any(path.iterdir()):
            raise NormlabError(f"cannot create a run in {path}: the directory is not empty")
    path.mkdir(parents=True, exist_ok=True)


def _remove_temporary_files(run_dir: Path) -> None:
    """Delete the temporary files that atomic writes killed midway left in ``run_dir``."""
    for path in run_dir.rglob(".*"):
        if path.is_file() and is_temporary(path):
            path.unlink(missing_ok=True)


def _repair_metrics_file(path: Path) -> bytes:
    """Cut a final line without newline off ``metrics.csv``; return the file's complete lines."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NormlabError(f"{path.parent} is a damaged run directory: {path.name} is missing") from None
    complete = metrics.complete_lines(data)
    if len(complete) != len(data):
        os.truncate(path, len(complete))
        append_durably(path, b"")  # fsyncs the truncation
    return complete
