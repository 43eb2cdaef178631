"""``load_run``: the reading side of a run directory, for reports and analysis.

Reading never modifies the run, and copes with everything a killed run can leave behind: a
truncated final ``metrics.csv`` line is dropped, leftover temporary files are ignored, and steps
duplicated by an interrupted truncation are read once.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError, UnknownNameError
from normlab.store import checkpoints, layout, metrics, probes
from normlab.store.files import read_json


def load_run(path) -> Run:
    """Open the run directory at ``path`` for reading (``NormlabError`` if it is not one)."""
    return Run(layout.require_run_dir(path))


class Run:
    """A run directory as data: config, provenance, status, metrics, probe arrays."""

    def __init__(self, path: Path):
        """Prefer ``load_run``, which checks that ``path`` is a run directory."""
        self.path = Path(path)
        self.config: dict = read_json(self.path / layout.CONFIG_FILE)
        self.info: dict = read_json(self.path / layout.RUN_FILE)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"

    @property
    def provenance(self) -> dict:
        """Versions, git revision, host, command line and seeds recorded at creation."""
        return self.info.get("provenance", {})

    @property
    def status(self) -> str:
        """The status as last written: a killed run stays ``"running"``."""
        return self.info["status"]

    @cached_property
    def metrics(self):
        """``metrics.csv`` as a DataFrame (``step``, ``network``, ``kind``, metric columns; NaN = missing).

        ``kind`` is "train" or "eval" (inferred for files written before the column existed).
        """
        return metrics.to_dataframe(metrics.read_metrics_bytes(self.path / layout.METRICS_FILE))

    def training(self, network: str | None = None):
        """The training rows (``kind == "train"``), of one network or all."""
        return self._rows("train", network)

    def evaluations(self, network: str | None = None):
        """The evaluation rows (``kind == "eval"``), of one network or all."""
        return self._rows("eval", network)

    def final_metrics(self, columns=None, best=("test_accuracy",)) -> dict[str, dict[str, float]]:
        """The last evaluation of every network that has one, and the best values over the run.

        ``{network: {"step": int, column: float, ..., "best_<b>": float}}``: ``columns`` default
        to the metric columns with a value in some evaluation; ``best_<b>`` (the maximum over
        the run's evaluations) is there for each ``b`` in ``best`` that has a value.
        """
        evals = self.evaluations()
        if columns is None:
            columns = [c for c in evals.columns if c not in (*metrics.KEY_COLUMNS, metrics.KIND_COLUMN)
                       and evals[c].notna().any()]
        result = {}
        for network, rows in evals.groupby("network", sort=False):
            last = rows.iloc[-1]
            entry = {"step": int(last["step"]), **{column: float(last[column]) for column in columns}}
            for column in best:
                if column in rows and rows[column].notna().any():
                    entry[f"best_{column}"] = float(rows[column].max())
            result[network] = entry
        return result

    def _rows(self, kind: str, network: str | None):
        frame = self.metrics
        rows = frame[frame[metrics.KIND_COLUMN] == kind]
        return rows if network is None else rows[rows["network"] == network]

    @property
    def probe_names(self) -> list[str]:
        """Names of the probes with metadata or data, sorted."""
        return layout.probe_names(self.path)

    def networks(self, name: str) -> list[str]:
        """Networks with stored data for probe ``name``, sorted."""
        return layout.probe_networks(self.path, self._known_probe(name))

    def probe(self, name: str, network: str) -> dict[str, np.ndarray]:
        """Every stored step of probe ``name`` for ``network``, leading axis = time.

        Includes a ``step`` array; rows are in step order.
        """
        networks = self.networks(name)
        if network not in networks:
            raise UnknownNameError(f"network for probe {name!r}", network, networks)
        return probes.read_probe(self.path / layout.PROBES_DIR / name / network)

    def probe_meta(self, name: str) -> dict:
        """The metadata set with ``set_probe_meta`` (empty if none was set)."""
        path = self.path / layout.PROBES_DIR / self._known_probe(name) / layout.PROBE_META_FILE
        return read_json(path) if path.is_file() else {}

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps of the stored checkpoints, oldest first."""
        return layout.checkpoint_steps(self.path)

    def restore_checkpoint(self, target_tree, *, step: int | None = None, prefix: str = ""):
        """``(step, tree)`` of checkpoint ``step`` (default: the latest) shaped like ``target_tree``,
        or of the part of it under the key path ``prefix`` (e.g. ``"[0].params"``)."""
        steps = self.checkpoint_steps
        if not steps:
            raise NormlabError(f"run {self.path} has no checkpoint")
        if step is None:
            step = steps[-1]
        if step not in steps:
            raise NormlabError(f"run {self.path} has no checkpoint at step {step}; steps: {steps}")
        path = self.path / layout.CHECKPOINTS_DIR / layout.checkpoint_name(step)
        return checkpoints.decode_checkpoint(path.read_bytes(), target_tree, source=path, prefix=prefix)

    def checkpoint_extra(self, step: int) -> dict:
        """The ``extra`` dict saved with checkpoint ``step``."""
        return checkpoints.load_extra(self.path / layout.CHECKPOINTS_DIR, step)

    def file(self, relpath) -> Path:
        """The path of a file written with ``RunStore.write_*`` (it may not exist)."""
        return layout.resolve_user_path(self.path, relpath)

    def read_text(self, relpath) -> str:
        """The text of a file written with ``RunStore.write_text``."""
        return self.file(relpath).read_text(encoding="utf-8")

    def read_json(self, relpath):
        """The object in a file written with ``RunStore.write_json``."""
        return read_json(self.file(relpath))

    def read_arrays(self, relpath) -> dict[str, np.ndarray]:
        """The arrays of a file written with ``RunStore.write_arrays``."""
        return probes.read_chunk(self.file(relpath))

    def _known_probe(self, name: str) -> str:
        """``name`` if the run has that probe, else ``UnknownNameError`` listing the probes."""
        names = self.probe_names
        if name not in names:
            raise UnknownNameError("probe", name, names)
        return name


def format_value(value) -> str:
    """A stored setting's value as ``--set`` writes it (lists comma-separated, floats short): how
    reports label runs and presets describe their settings; ``experiments.config.parse_value``
    reads it back. Here, at the store, because both the report and the experiments use it."""
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
