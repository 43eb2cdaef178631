"""Results as tidy (long-format) pandas tables: one row per run and network with its settings and
final/best metrics (``load_sweep``), and any probe's headline over steps (``headline_table``),
ready for ``seaborn.lineplot(data=..., x="step", y="value", hue="network")``.

Both take run directories or sweep/study directories (any directory holding runs), found and
labelled as the report finds and labels them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from normlab.errors import NormlabError
from normlab.probes import headline_series
from normlab.report.runs import collect_runs, declared_headline

RUN_COLUMNS = ["run", "path", "network", "status"]
HEADLINE_COLUMNS = ["run", "network", "probe", "step", "value", "key", "label"]


def load_sweep(*paths: str | Path) -> pd.DataFrame:
    """One row per (run, network) of every run under ``paths``.

    Columns: ``run`` (the report's label), ``path``, ``network``, ``status``, every setting of
    the run's config (lists as JSON text, so rows group and compare), then the run's
    ``final_metrics()``: ``final_step`` and each evaluation column's last value, and
    ``best_test_accuracy`` (max over evaluations). A network with no evaluation has NaN metrics.
    """
    rows = []
    for report_run in _runs(paths):
        run = report_run.run
        settings = {key: _cell(value) for key, value in run.config.items() if key != "preset_defaults"}
        final = run.final_metrics()
        for network in report_run.networks:
            metrics = dict(final.get(network, {}))
            if "step" in metrics:
                metrics["final_step"] = metrics.pop("step")
            rows.append({"run": report_run.label, "path": str(run.path), "network": network,
                         "status": run.status, **settings, **metrics})
    return pd.DataFrame(rows)


def headline_table(*paths: str | Path, probe: str | None = None) -> pd.DataFrame:
    """Every stored step of the declared headline of ``probe`` (default: every probe), long format.

    Columns: ``run``, ``network``, ``probe``, ``step``, ``value`` (the headline output at that
    step, an array key averaged over its own axes, as the summary's headline is), ``key`` (the
    output it reads) and ``label`` (the headline in words). An unknown ``probe`` is a
    ``NormlabError`` listing the probes the runs have.
    """
    runs = _runs(paths)
    known = sorted({name for r in runs for name in r.run.probe_names})
    if probe is not None and probe not in known:
        raise NormlabError(f"no probe {probe!r} in these runs; probes: {', '.join(known) or 'none'}")
    frames = []
    for report_run in runs:
        run = report_run.run
        for name in [probe] if probe is not None else run.probe_names:
            if name not in run.probe_names:
                continue
            per_network_meta = run.probe_meta(name).get("networks", {})
            headline = declared_headline(name, per_network_meta)
            if headline is None:
                continue
            for network in run.networks(name):
                layers = per_network_meta.get(network, {}).get("layers")
                arrays = run.probe(name, network)
                values = headline_series(headline, arrays, layers)
                if values is None:
                    continue
                frames.append(pd.DataFrame({
                    "run": report_run.label, "network": network, "probe": name, "step": arrays["step"],
                    "value": values, "key": headline.resolved_key(layers or []), "label": headline.label}))
    if not frames:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def export_tables(paths, out: str | Path, *, table_format: str = "csv") -> list[Path]:
    """Write ``runs.<ext>`` (``load_sweep``) and ``headlines.<ext>`` (``headline_table``) into
    ``out``; ``table_format`` "csv" or "parquet" (needs pyarrow)."""
    if table_format not in ("csv", "parquet"):
        raise NormlabError(f"table format must be 'csv' or 'parquet'; got {table_format!r}")
    if table_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise NormlabError("parquet export needs pyarrow (pip install pyarrow); use csv") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("runs", load_sweep(*paths)), ("headlines", headline_table(*paths))):
        target = out / f"{name}.{table_format}"
        if table_format == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_parquet(target, index=False)
        written.append(target)
    return written


def _runs(paths):
    if not paths:
        raise NormlabError("give at least one run or sweep directory")
    return collect_runs(paths).runs


def _cell(value):
    """A config value as one table cell: scalars as they are, lists and dicts as JSON text."""
    return json.dumps(value) if isinstance(value, list | dict | tuple) else value
