"""Probe arrays: buffered per (probe, network), written as one ``.npz`` chunk per flush.

A chunk holds every array of the buffered steps stacked along a new leading (time) axis, plus a
``step`` array. Chunks are never appended to, only written whole (atomically) or, when a resumed
run truncates, rewritten whole, so a kill can never leave a half-written chunk behind.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError
from normlab.store.files import write_atomically
from normlab.store.layout import chunk_files, chunk_name

STEP_KEY = "step"


@dataclass
class ProbeBuffer:
    """The steps of one (probe, network) recorded since the last flush."""

    steps: list[int] = field(default_factory=list)
    records: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        """Buffer one step; its arrays must match the keys, shapes and dtypes already buffered."""
        if self.records:
            _check_same_layout(self.records[0], arrays)
        self.steps.append(step)
        self.records.append(arrays)

    def drop_after(self, last_step: int) -> None:
        """Forget the buffered steps after ``last_step``."""
        kept = [i for i, step in enumerate(self.steps) if step <= last_step]
        self.steps = [self.steps[i] for i in kept]
        self.records = [self.records[i] for i in kept]

    def stacked(self) -> dict[str, np.ndarray]:
        """The buffered arrays stacked over time, plus the ``step`` array."""
        keys = self.records[0].keys()
        stacked = {key: np.stack([record[key] for record in self.records]) for key in keys}
        stacked[STEP_KEY] = np.asarray(self.steps, dtype=np.int64)
        return stacked


def _valid_name(key) -> bool:
    """Dotted identifiers: safe as npz member names (no '/', which would make zip folders)."""
    return (
        isinstance(key, str)
        and key != STEP_KEY
        and all(part.isidentifier() or part.isdigit() for part in key.split("."))
    )


def as_arrays(arrays: dict) -> dict[str, np.ndarray]:
    """Copy ``arrays`` to host NumPy arrays (JAX arrays accepted), checking their names.

    Copying matters: a caller may reuse or donate its buffers before the next flush.
    """
    if not arrays:
        raise ValueError("append_probe needs at least one array")
    converted = {}
    for key, value in arrays.items():
        if not _valid_name(key):
            raise ValueError(
                f"probe array names are identifiers joined by dots (e.g. 'dense0.hist'), not {STEP_KEY!r}; got {key!r}"
            )
        converted[key] = np.array(value, copy=True)
        if converted[key].dtype.hasobject:
            raise ValueError(f"probe array {key!r} has dtype object; store numbers only")
    return converted


def write_chunk(directory: Path, stacked: dict[str, np.ndarray]) -> Path:
    """Atomically write ``stacked`` as the chunk named after its first and last step."""
    steps = stacked[STEP_KEY]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / chunk_name(int(steps[0]), int(steps[-1]))
    write_atomically(path, lambda file: write_npz(file, stacked))
    return path


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one chunk."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def read_probe(directory: Path) -> dict[str, np.ndarray]:
    """Every chunk in ``directory`` concatenated in step order (leading axis = time).

    Steps stored twice (possible only if a truncation was killed between writing the shortened
    chunk and deleting the old one) are kept once.
    """
    chunks = [read_chunk(path) for _, _, path in chunk_files(directory)]
    if not chunks:
        return {}
    keys = chunks[0].keys()
    if any(chunk.keys() != keys for chunk in chunks):
        raise NormlabError(f"the probe chunks in {directory} do not all hold the same arrays")
    try:
        joined = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in keys}
    except ValueError as error:
        raise NormlabError(f"the probe chunks in {directory} have incompatible shapes: {error}") from None
    _, first_occurrences = np.unique(joined[STEP_KEY], return_index=True)
    return {key: values[first_occurrences] for key, values in joined.items()}


def truncate_chunks(directory: Path, last_step: int) -> None:
    """Remove every step after ``last_step`` from the chunks in ``directory``.

    A chunk that straddles ``last_step`` is rewritten (atomically, under its new name) before the
    old one is deleted, so a kill in between leaves duplicate steps, which readers drop, rather
    than lost ones; running the truncation again finishes the job.
    """
    for first, last, path in chunk_files(directory):
        if last <= last_step:
            continue
        if first <= last_step:
            chunk = read_chunk(path)
            kept = chunk[STEP_KEY] <= last_step
            write_chunk(directory, {key: values[kept] for key, values in chunk.items()})
        path.unlink()


def last_stored_step(directory: Path) -> int | None:
    """The largest step stored in ``directory``'s chunks, from their names alone."""
    chunks = chunk_files(directory)
    return max(last for _, last, _ in chunks) if chunks else None


def write_npz(file, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` (what ``np.savez`` writes) to ``file``.

    Written by hand so array names such as ``file`` cannot collide with ``np.savez``'s own
    parameters.
    """
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)


def _check_same_layout(expected: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``arrays`` can be stacked with ``expected``."""
    if arrays.keys() != expected.keys():
        raise ValueError(f"probe arrays changed from {sorted(expected)} to {sorted(arrays)}")
    for key, value in arrays.items():
        if value.shape != expected[key].shape or value.dtype != expected[key].dtype:
            raise ValueError(
                f"probe array {key!r} changed from {expected[key].shape} {expected[key].dtype} "
                f"to {value.shape} {value.dtype}; every step must have the same shape and dtype"
            )
