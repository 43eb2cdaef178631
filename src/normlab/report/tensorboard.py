"""Export a run as TensorBoard event files, so users can open it in the tool they already use.

Layout: one TensorBoard "run" per network, ``<out>/<network>/events.out.tfevents.*``, so the
networks of a pair appear overlaid under the same tags:

- ``metrics/<column>``: every column of metrics.csv, at every step it has a value;
- ``<probe>/<array>``: every probe array with one number per measurement (layer arrays as
  ``activations/dense0/mean``; per-layer vectors such as ``ics/l2`` as ``ics/l2/<layer>``;
  percentiles as ``activations/tracked/percentiles/p15``);
- ``<probe>/<layer>/hist``: the histograms (activations, gradients, BN parameters' deviations:
  every output a probe declares of shape ``("bins",)``), from the stored counts and bin edges
  (``add_histogram_raw``: buckets are the probe's bins, ``min``/``max`` the outer edges of the
  non-empty bins, ``sum``/``sum_squares`` computed from bin centers);
- ``config``: the run's settings as a text summary.

Nothing is recomputed: the values are the stored ones, so the events read back equal the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.errors import NormlabError
from normlab.report.runs import declared_dimensions
from normlab.store import load_run

EVENT_FILE_PREFIX = "events.out.tfevents."


def export_tensorboard(run_path: Path, out: Path) -> Path:
    """Write the run at ``run_path`` as event files under ``out``; returns ``out``."""
    summary_writer = _summary_writer_class()
    run = load_run(run_path)
    out = Path(out)
    for network in run.config.get("networks") or sorted(set(run.metrics["network"])):
        directory = out / network
        _remove_old_events(directory)
        writer = summary_writer(logdir=str(directory), flush_secs=3600)
        try:
            writer.add_text("config", _config_markdown(run.config), global_step=0)
            write_metrics(writer, run, network)
            for probe in run.probe_names:
                if network in run.networks(probe):
                    write_probe(writer, run, probe, network)
        finally:
            writer.close()
    return out


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise NormlabError("TensorBoard export needs tensorboardX: pip install 'normlab[tensorboard]'") from None
    return SummaryWriter


def _remove_old_events(directory: Path) -> None:
    """Delete event files of an earlier export, so a re-export does not show every value twice."""
    if directory.is_dir():
        for path in directory.glob(f"{EVENT_FILE_PREFIX}*"):
            path.unlink()


def _config_markdown(config: dict) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in config.items())
    return f"| setting | value |\n|---|---|\n{rows}"


def write_metrics(writer, run, network: str) -> None:
    """``metrics/<column>`` scalars at every step where the column has a value."""
    metrics = run.metrics
    rows = metrics[metrics["network"] == network]
    for column in metrics.columns:
        if column in ("step", "network", "kind"):
            continue
        present = rows[["step", column]].dropna()
        for step, value in zip(present["step"].to_numpy(), present[column].to_numpy(float)):
            writer.add_scalar(f"metrics/{column}", float(value), global_step=int(step))


def write_probe(writer, run, probe: str, network: str) -> None:
    """Each stored array by the shape its probe declares (``Output.shape``): one number per
    measurement (``()``) as scalars; ``("bins",)`` as histograms on the meta's ``edges``;
    ``("layers",)`` as one scalar series per layer; ``("percentiles",)`` as one per percentile.
    Other vectors (per-unit moments, per-step-size values) would be hundreds of scalar series;
    they stay in the run store and the HTML report. An array no declaration names is skipped."""
    arrays = run.probe(probe, network)
    meta = (run.probe_meta(probe).get("networks") or {}).get(network, {}) or {}
    steps = np.asarray(arrays["step"])
    columns = {"layers": list(meta.get("layers") or []),
               "percentiles": [f"p{q:g}" for q in meta.get("percentiles") or []]}
    for name, shape in declared_dimensions(probe, meta).items():
        if name not in arrays:
            continue
        values = np.asarray(arrays[name])
        tag = f"{probe}/{name.replace('.', '/')}"
        if shape == () and values.ndim == 1:
            _add_scalars(writer, tag, steps, values)
        elif shape == ("bins",) and meta.get("edges") and values.ndim == 2:
            _add_histograms(writer, tag, steps, values, np.asarray(meta["edges"], dtype=float))
        elif len(shape) == 1 and shape[0] in columns and values.ndim == 2 and len(columns[shape[0]]) == values.shape[1]:
            for column, label in enumerate(columns[shape[0]]):  # e.g. ics/l2/<layer>, .../percentiles/p15
                _add_scalars(writer, f"{tag}/{label}", steps, values[:, column])


def _add_scalars(writer, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
    for step, value in zip(steps, values.astype(float)):
        writer.add_scalar(tag, float(value), global_step=int(step))


def histogram_fields(counts: np.ndarray, edges: np.ndarray) -> dict | None:
    """The ``add_histogram_raw`` arguments for bin ``counts`` on ``edges``; None if all empty.

    TensorBoard's bucket i spans (limit[i-1], limit[i]] with the first starting at ``min``, so the
    limits are the right edges of the bins and ``min`` the left edge of the first non-empty bin.
    """
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        return None  # TensorBoard rejects empty histograms
    filled = np.nonzero(counts)[0]
    centers = (edges[:-1] + edges[1:]) / 2
    return {
        "min": float(edges[filled[0]]),
        "max": float(edges[filled[-1] + 1]),
        "num": int(total),
        "sum": float(np.dot(counts, centers)),
        "sum_squares": float(np.dot(counts, centers**2)),
        "bucket_limits": edges[1:].tolist(),
        "bucket_counts": counts.tolist(),
    }


def _add_histograms(writer, tag: str, steps: np.ndarray, counts: np.ndarray, edges: np.ndarray) -> None:
    if counts.shape[1] != len(edges) - 1:
        return  # counts that do not match the recorded edges cannot be placed in buckets
    for step, row in zip(steps, counts):
        fields = histogram_fields(row, edges)
        if fields is not None:
            writer.add_histogram_raw(tag, global_step=int(step), **fields)
