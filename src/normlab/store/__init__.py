"""The run directory: the only part of normlab that reads or writes run files.

Write with ``RunStore`` (``create`` a new run, ``open`` one to resume), read with ``load_run``.
The on-disk layout is described in ``normlab.store.layout`` and docs/INTERFACES.md.
"""

from normlab.store.layout import is_run_dir
from normlab.store.provenance import collect_provenance
from normlab.store.reader import Run, format_value, load_run
from normlab.store.writer import STATUSES, TERMINAL_STATUSES, RunStore, check_output_root, new_run_dir

__all__ = [
    "STATUSES",
    "TERMINAL_STATUSES",
    "Run",
    "RunStore",
    "collect_provenance",
    "format_value",
    "is_run_dir",
    "load_run",
    "new_run_dir",
    "check_output_root",
]
