"""Names and paths inside a run directory; the one place that knows the on-disk layout.

::

    <run>/
      run.json                      provenance, status, start/end time (replaced atomically)
      config.json                   the resolved config (written once)
      metrics.csv                   step,network,kind,<metric columns...> (appended, fsynced per flush)
      probes/<probe>/meta.json      probe metadata (replaced atomically)
      probes/<probe>/<network>/<first:09d>-<last:09d>.npz   one chunk per flush
      checkpoints/<step:09d>.msgpack                         model/optimizer state
      checkpoints/<step:09d>.json                            the checkpoint's ``extra`` dict
      start/start.json, start/data.npz, start/weights.npz   the run's start views (examples,
                                    input histograms, step-0 weight histograms), written once
      <anything else>               figures, reports: written through ``RunStore.write_*``
"""

from __future__ import annotations

import re
from pathlib import Path

from normlab.errors import NormlabError

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
PROBES_DIR = "probes"
CHECKPOINTS_DIR = "checkpoints"
PROBE_META_FILE = "meta.json"
# The start views: written once at run creation through ``RunStore.write_json`` / ``write_arrays``.
START_META_FILE = "start/start.json"
START_DATA_FILE = "start/data.npz"
START_WEIGHTS_FILE = "start/weights.npz"

# Bumped when the layout changes incompatibly; stored in run.json.
FORMAT_VERSION = 1

# Entries only the store itself writes; `write_text` and friends refuse them.
RESERVED_ENTRIES = frozenset({RUN_FILE, CONFIG_FILE, METRICS_FILE, PROBES_DIR, CHECKPOINTS_DIR})

# Probe and network names become directory names, so they are kept to a portable alphabet.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_CHUNK_PATTERN = re.compile(r"(\d+)-(\d+)\.npz")
_CHECKPOINT_PATTERN = re.compile(r"(\d+)\.msgpack")


def is_run_dir(path) -> bool:
    """Whether ``path`` is a run directory (it holds ``run.json`` and ``config.json``).

    ``run.json`` is written last by ``RunStore.create``, so a directory whose creation was
    interrupted is not mistaken for a run.
    """
    path = Path(path)
    return (path / RUN_FILE).is_file() and (path / CONFIG_FILE).is_file()


def require_run_dir(path) -> Path:
    """Return ``path`` as a ``Path`` if it is a run directory, else raise a one-line error."""
    path = Path(path)
    if not is_run_dir(path):
        raise NormlabError(
            f"{path} is not a normlab run directory (no {RUN_FILE} and {CONFIG_FILE}); "
            "pass the directory a run was written to"
        )
    return path


def check_component_name(kind: str, name: str) -> str:
    """Return ``name`` if it can be used as a directory name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} must be letters, digits, '_', '.' or '-' "
            "and must not start with '.' or '-'"
        )
    return name


def chunk_name(first_step: int, last_step: int) -> str:
    """File name of the probe chunk holding steps ``first_step..last_step``."""
    return f"{first_step:09d}-{last_step:09d}.npz"


def parse_chunk_name(name: str) -> tuple[int, int] | None:
    """``(first_step, last_step)`` of a chunk file name, or ``None`` for any other file."""
    match = _CHUNK_PATTERN.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step``."""
    return f"{step:09d}.msgpack"


def checkpoint_extra_name(step: int) -> str:
    """File name of the JSON ``extra`` dict stored beside checkpoint ``step``."""
    return f"{step:09d}.json"


def parse_checkpoint_name(name: str) -> int | None:
    """The step of a checkpoint file name, or ``None`` for any other file."""
    match = _CHECKPOINT_PATTERN.fullmatch(name)
    return int(match[1]) if match else None


def chunk_files(directory: Path) -> list[tuple[int, int, Path]]:
    """``(first, last, path)`` of the probe chunks in ``directory``, ordered by first step."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        steps = parse_chunk_name(path.name)
        if steps is not None:
            found.append((*steps, path))
    return sorted(found)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints stored in ``run_dir``, oldest first."""
    directory = run_dir / CHECKPOINTS_DIR
    if not directory.is_dir():
        return []
    steps = (parse_checkpoint_name(path.name) for path in directory.iterdir())
    return sorted(step for step in steps if step is not None)


def probe_names(run_dir: Path) -> list[str]:
    """Names of the probes that have metadata or data in ``run_dir``, sorted."""
    directory = run_dir / PROBES_DIR
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and _NAME_PATTERN.fullmatch(p.name))


def probe_networks(run_dir: Path, probe: str) -> list[str]:
    """Names of the networks with at least one stored chunk for ``probe``, sorted.

    A network directory without chunks (emptied by ``truncate_after``, or made just before a
    kill) is not listed, so every listed network has data to read.
    """
    directory = run_dir / PROBES_DIR / probe
    if not directory.is_dir():
        return []
    return sorted(
        p.name for p in directory.iterdir() if _NAME_PATTERN.fullmatch(p.name) and chunk_files(p)
    )


def resolve_user_path(run_dir: Path, relpath) -> Path:
    """The path of a user file ``relpath`` inside ``run_dir``; refuses escapes and store files."""
    relative = Path(relpath)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise ValueError(f"{relpath!r} must be a relative path inside the run directory")
    if relative.parts[0] in RESERVED_ENTRIES:
        raise ValueError(
            f"{relpath!r} is written by the store itself; reserved: {', '.join(sorted(RESERVED_ENTRIES))}"
        )
    return run_dir / relative
