"""Durable file primitives: atomic replacement, durable appends, JSON encoding.

Every file the store replaces goes through :func:`write_atomically`: the new content is written to
a hidden temporary file in the same directory, flushed and fsynced, then ``os.replace``d over the
target. ``os.replace`` is atomic on POSIX within one file system, so a reader (or a run killed with
SIGKILL at any instant) sees either the complete old file or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from normlab.errors import fault_point

# Temporary files carry this marker so a later ``RunStore.open`` can tell its own leftovers from
# anything a user put in the run directory.
TMP_MARKER = ".normlab-tmp-"


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden path next to ``path`` (same directory, so ``os.replace`` stays atomic).

    The suffix of ``path`` is kept so tools that infer the format from the name (matplotlib's
    ``savefig``) still work on the temporary file.
    """
    return path.with_name(f".{path.stem}{TMP_MARKER}{secrets.token_hex(4)}{path.suffix}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file left behind by an interrupted atomic write."""
    return path.name.startswith(".") and TMP_MARKER in path.name


def fsync_directory(directory: Path) -> None:
    """Make a rename or new entry in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``path``.

    If the body raises, the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        _fsync_file(tmp)
        fault_point("write")  # the new content complete beside the old file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary binary file, then atomically replace ``path`` by it."""
    with replacing(path) as tmp, open(tmp, "xb") as file:
        write(file)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` by a file holding exactly ``data``."""
    write_atomically(path, lambda file: file.write(data))


def write_json_atomically(path: Path, obj) -> None:
    """Atomically replace ``path`` by ``obj`` as indented JSON.

    The text is encoded before any file is touched, so an object that cannot be encoded leaves
    the old file as it was.
    """
    write_bytes_atomically(path, encode_json(obj))


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and fsync it, or leave the file as it was if the write fails.

    One ``os.write`` per call (looping only on short writes) keeps small appends to a single
    system call; a failure (disk full, ...) truncates the file back to its old length so a retry
    does not leave a half-written line in the middle of the file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        old_size = os.fstat(fd).st_size
        fault_point("append")
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, old_size)
            raise
    finally:
        os.close(fd)


def encode_json(obj) -> bytes:
    """``obj`` as UTF-8 JSON with a trailing newline; NumPy scalars/arrays and paths allowed."""
    return (json.dumps(obj, indent=2, default=_json_default) + "\n").encode("utf-8")


def read_json(path: Path):
    """Parse the JSON file at ``path``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(value):
    """Encode the non-JSON types that configs and probe metadata commonly hold."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk (it may have been written by another library)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a regular file may accept a short write)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
