"""``metrics.csv``: one row per (step, network, kind), appended in complete lines.

Columns: ``step,network,kind`` then the run's metric columns. ``kind`` says what a row is:
"train" (a training step's batch metrics) or "eval" (an evaluation). Files written before the
column existed (``step,network,<metrics>``) stay readable: their kind is inferred by the rule
their readers used, "eval" where ``test_loss`` is present (:func:`legacy_kind`).

The file is only ever appended to, one fsynced write per flush, so a flush costs the size of the
new rows, not of the whole history. A run killed in the middle of a write can leave a final line
without its newline; every reader here drops that line, and ``RunStore.open`` cuts it off before
appending again.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError
from normlab.store.layout import check_component_name

KEY_COLUMNS = ("step", "network")
KIND_COLUMN = "kind"
KINDS = ("train", "eval")


def header_line(metric_columns: list[str]) -> bytes:
    """The CSV header: ``step,network,kind`` then the metric columns."""
    return _csv_line([*KEY_COLUMNS, KIND_COLUMN, *metric_columns])


def check_metric_columns(metric_columns) -> list[str]:
    """Return the metric columns as a list, rejecting duplicates and the key columns."""
    columns = list(metric_columns)
    if not all(isinstance(name, str) and name for name in columns):
        raise ValueError(f"metric columns must be non-empty strings, got {columns!r}")
    clashes = sorted(set(columns) & {*KEY_COLUMNS, KIND_COLUMN})
    if clashes:
        raise ValueError(f"metric columns must not include the key columns {clashes}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"metric columns contain duplicates: {columns!r}")
    return columns


def format_row(row: dict, metric_columns: list[str], *, with_kind: bool = True) -> tuple[int, bytes]:
    """``(step, csv line)`` for one metrics row; missing metrics are left empty (NaN in pandas).

    ``row["kind"]`` (optional) is one of ``KINDS``; ``with_kind=False`` writes a file of the
    older format (no kind column), as a resumed older run has.
    """
    unknown = sorted(set(row) - {*KEY_COLUMNS, KIND_COLUMN} - set(metric_columns))
    if unknown:
        raise NormlabError(
            f"unknown metric column(s) {', '.join(unknown)}; "
            f"this run's columns: {', '.join(metric_columns)}"
        )
    missing = [key for key in KEY_COLUMNS if key not in row]
    if missing:
        raise ValueError(f"every metrics row needs {' and '.join(KEY_COLUMNS)}; missing {missing}")
    step = as_step(row["step"])
    network = check_component_name("network", row["network"])
    kind = row.get(KIND_COLUMN)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"a metrics row's kind must be one of {KINDS}, got {kind!r}")
    kind_cell = [kind or ""] if with_kind else []
    values = [step, network, *kind_cell, *(_cell(name, row.get(name)) for name in metric_columns)]
    return step, _csv_line(values)


def as_step(value) -> int:
    """``value`` as a non-negative Python int (NumPy/JAX integer scalars accepted)."""
    step = as_integer(value)
    if step < 0:
        raise ValueError(f"a step must be >= 0, got {step}")
    return step


def as_integer(value) -> int:
    """``value`` as a Python int; NumPy/JAX integer scalars accepted, floats and bools refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        value = np.asarray(value)
        if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"a step must be an integer, got {value!r}")
    return int(value)


def complete_lines(data: bytes) -> bytes:
    """``data`` without a trailing line that has no newline (a write cut short by a kill)."""
    end = data.rfind(b"\n")
    return data[: end + 1]


def read_metrics_bytes(path: Path) -> bytes:
    """The complete lines of the metrics file (empty if it does not exist)."""
    try:
        return complete_lines(path.read_bytes())
    except FileNotFoundError:
        return b""


def keep_rows_up_to(data: bytes, last_step: int) -> bytes:
    """The header and the rows of ``data`` whose step is ``<= last_step``, byte for byte.

    The step is the first field and is always a bare integer, so rows are filtered without
    re-encoding them (re-encoding could change how floats are written).
    """
    header, _, body = complete_lines(data).partition(b"\n")
    kept = [line for line in body.splitlines(keepends=True) if int(line.split(b",", 1)[0]) <= last_step]
    return header + b"\n" + b"".join(kept)


def header_columns(data: bytes) -> list[str]:
    """The column names in the first line of ``data``."""
    first_line = data.split(b"\n", 1)[0].decode("utf-8")
    return next(csv.reader([first_line]), [])


def to_dataframe(data: bytes):
    """Parse complete metrics lines into a DataFrame (empty, with the columns, if no rows)."""
    import pandas as pd  # pandas is only needed by readers; writers stay light to import

    if not data:
        return pd.DataFrame(columns=[*KEY_COLUMNS, KIND_COLUMN])
    # Only an empty cell is missing: pandas' default NA words ("nan", "NA", "null", ...) would turn
    # a network of that name into NaN.
    missing = {name: [""] for name in header_columns(data) if name != "network"}
    frame = pd.read_csv(io.BytesIO(data), dtype={"network": str, KIND_COLUMN: str}, keep_default_na=False,
                        na_values=missing)
    if frame.empty:  # header only: give the columns the dtypes they will have once rows exist
        metric_dtypes = {name: "float64" for name in frame.columns if name not in (*KEY_COLUMNS, KIND_COLUMN)}
        frame = frame.astype({"step": "int64", **metric_dtypes})
    inferred = legacy_kind(frame)
    if KIND_COLUMN not in frame:
        frame.insert(len(KEY_COLUMNS), KIND_COLUMN, inferred)
    else:
        frame[KIND_COLUMN] = frame[KIND_COLUMN].where(frame[KIND_COLUMN].notna(), inferred).astype(object)
    return frame


def legacy_kind(frame):
    """The kind of rows written without one: "eval" where ``test_loss`` is present, else "train"."""
    evals = frame["test_loss"].notna().to_numpy() if "test_loss" in frame else np.zeros(len(frame), bool)
    return np.where(evals, "eval", "train").astype(object)


def _cell(name: str, value):
    """One CSV cell: empty for missing, the exact repr for floats, ints as they are.

    Only numbers are accepted: every metric column then reads back as a numeric column, and no
    cell needs quoting, which keeps each row on one line.
    """
    if value is None:
        return ""
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.ndim != 0:
            raise ValueError(f"metric {name!r} must be a scalar, got an array of shape {array.shape}")
        value = array.item()
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, numbers.Real):
        raise ValueError(f"metric {name!r} must be a number, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        return ""  # empty and NaN read back the same, and empty is what pandas writes itself
    return value  # csv writes floats with repr, which round-trips exactly


def _csv_line(values) -> bytes:
    """``values`` as one CSV line ending in ``\\n`` (quoting only where needed)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")
