"""Sweep curves: final test accuracy against the swept setting, mean and spread over seeds (B18, d2l).

Which setting was swept is read from the sub-runs' configs: the keys whose values differ. Seeds
(``seed``, ``data_seed``) are replicates and are averaged over; of the other differing keys, the
numeric one with the most distinct values becomes the x axis and any remaining ones split the
curves into groups.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from normlab.report.figures.study import paired_table, plot_accuracy_per_epoch, trains_table
from normlab.report.runs import (
    REPLICATE_KEYS,
    ReportRun,
    RunSet,
    Sweep,
    diverged_steps,
    eval_rows,
    hashable,
    is_number,
    study_record,
    varied_settings,
)
from normlab.report.sections import Plot, Section, Table, missing
from normlab.report.style import network_color, network_label, new_figure, run_linestyle, run_marker, shared_legend
from normlab.store import format_value

TITLE = "Sweep curves"


@dataclass
class Point:
    """The final metric of one network over the replicates of one setting."""

    values: list[float] = field(default_factory=list)  # runs that did not diverge
    diverged: int = 0
    seeds: dict = field(default_factory=dict)  # seed -> final value (NaN: diverged), for paired statistics

    @property
    def n(self) -> int:
        return len(self.values) + self.diverged

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


@dataclass
class SweepCurves:
    """One sweep reduced to curves: ``points[(group, network)][x] -> Point``."""

    sweep: Sweep
    x_key: str | None
    group_keys: list[str]
    metric: str
    points: dict = field(default_factory=lambda: defaultdict(dict))


def choose_x_key(configs: list[dict]) -> tuple[str | None, list[str]]:
    """(x-axis key, grouping keys) from the settings that differ between the runs."""
    varied = [key for key in varied_settings(configs) if key not in REPLICATE_KEYS]
    if not varied:
        return None, []

    def rank(key):
        values = {hashable(config.get(key)) for config in configs}
        return (all(is_number(value) for value in values), len(values))

    x_key = max(varied, key=rank)
    return x_key, [key for key in varied if key != x_key]


def final_metric(report_run: ReportRun, network: str, metric: str) -> float | None:
    """The last evaluated ``metric`` of ``network``; None if it diverged, NaN if never evaluated."""
    if network in diverged_steps(report_run):
        return None
    rows = eval_rows(report_run, network)
    if rows is None or metric not in rows:
        return math.nan
    values = rows[metric].dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def sweep_metric(runs: list[ReportRun]) -> str:
    """Test accuracy for classification runs, test loss when no run has an accuracy (regression)."""
    for report_run in runs:
        for network in report_run.networks:
            rows = eval_rows(report_run, network)
            if rows is not None and "test_accuracy" in rows and rows["test_accuracy"].notna().any():
                return "test_accuracy"
    return "test_loss"


def sweep_curves(sweep: Sweep) -> SweepCurves:
    configs = [r.run.config for r in sweep.runs]
    x_key, group_keys = choose_x_key(configs)
    curves = SweepCurves(sweep, x_key, group_keys, sweep_metric(sweep.runs))
    for report_run in sweep.runs:
        config = report_run.run.config
        x = hashable(config.get(x_key)) if x_key else "all runs"
        group = ", ".join(f"{key}={format_value(config.get(key))}" for key in group_keys)
        for network in report_run.networks:
            point = curves.points[(group, network)].setdefault(x, Point())
            value = final_metric(report_run, network, curves.metric)
            if value is None:
                point.diverged += 1
            elif not math.isnan(value):
                point.values.append(value)
            point.seeds[config.get("seed")] = math.nan if value is None else value
    return curves


def _x_positions(curves: list[SweepCurves]):
    """(x values in order, position of each, numeric?) shared by the overlaid sweeps."""
    xs = sorted({x for c in curves for points in c.points.values() for x in points}, key=_sort_key)
    numeric = all(is_number(x) for x in xs)
    return xs, ({x: float(x) for x in xs} if numeric else {x: float(i) for i, x in enumerate(xs)}), numeric


def _sort_key(value):
    return (0, float(value), "") if is_number(value) else (1, 0.0, format_value(value))


def plot_sweep(curves: list[SweepCurves]) -> Plot:
    """Mean final metric (± std over replicates) against the swept setting; sweeps overlaid."""
    xs, position, numeric = _x_positions(curves)
    figure, axes = new_figure(1, 1, height=3.8, width=8.0)
    axis = axes[0, 0]
    for index, c in enumerate(curves):
        for (group, network), points in sorted(
            c.points.items(), key=lambda item: (item[0][0], _network_order(c, item[0][1]))
        ):
            _draw_curve(axis, c, index, group, network, points, position, several=len(curves) > 1,
                        lift=_network_order(c, network))
    key, metric = curves[0].x_key, curves[0].metric
    if numeric and _log_x(xs):
        axis.set_xscale("log")
    if not numeric:
        axis.set_xticks([position[x] for x in xs], [format_value(x) for x in xs])
    axis.set_xlabel(key or "")
    axis.set_ylabel(f"final {metric.replace('_', ' ')}")
    if any(line.get_marker() == "x" for line in axis.get_lines()):
        axis.plot([], [], linestyle="none", marker="x", color="gray", label="diverged in every replicate")
    shared_legend(figure)
    name = key or "replicates"
    caption = (
        f"Final {metric.replace('_', ' ')} of every network (the last evaluation of each run) against "
        f"the swept setting '{name}', one curve per network"
        + (f" and per value of {', '.join(curves[0].group_keys)}" if curves[0].group_keys else "")
        + ". Points are the mean over the replicates (runs differing only in seed) that did not diverge, "
        "the shaded band their standard deviation, and n their number (replicates that diverged are "
        "counted apart, as '+k diverged'). A cross on the lower edge marks a setting "
        "at which the network diverged in every replicate (partial divergence is listed in the table). "
        + ("Higher is better. " if metric == "test_accuracy" else "Lower is better. ")
        + "B18 and d2l exercise 2: BN's advantage is that it keeps training stable over a much wider "
        "range of learning rates, so its curve stays high where the baseline's falls or diverges."
        + (" Line styles tell the overlaid sweeps apart." if len(curves) > 1 else "")
    )
    return Plot(f"sweep_{_slug(name)}", f"Final {metric.replace('_', ' ')} against {name}", figure, caption)


def _network_order(curves: SweepCurves, network: str) -> int:
    order = [n for r in curves.sweep.runs for n in r.networks]
    return order.index(network) if network in order else len(order)


def _draw_curve(axis, curves: SweepCurves, index: int, group: str, network: str, points: dict, position, *,
                several: bool, lift: int = 0) -> None:
    """One network's curve with its band over replicates, its "n=" labels (lifted per network so they do not overlap)
    and crosses for settings where every replicate diverged."""
    xs = sorted(points, key=_sort_key)
    ok = [x for x in xs if points[x].values]
    label = network_label(network) + (f" [{group}]" if group else "") + (f" ({curves.sweep.label})" if several else "")
    style = {"color": network_color(network), "linestyle": run_linestyle(index), "marker": run_marker(index)}
    at = np.asarray([position[x] for x in ok])
    means = np.asarray([points[x].mean for x in ok])
    spreads = np.asarray([points[x].std for x in ok])
    axis.plot(at, means, linewidth=1.5, markersize=5, label=label, **style)
    if any(points[x].n > 1 for x in ok):
        axis.fill_between(at, means - spreads, means + spreads, color=style["color"], alpha=0.15, linewidth=0)
    for x in ok:
        point = points[x]
        if point.n > 1:
            text = f"n={len(point.values)}" + (f" (+{point.diverged} diverged)" if point.diverged else "")
            axis.annotate(text, (position[x], point.mean), textcoords="offset points",
                          xytext=(4, 4 + 9 * lift), fontsize=6.5, color=style["color"])
    failed = [x for x in xs if not points[x].values and points[x].diverged]
    if failed:
        axis.plot([position[x] for x in failed], [0.0] * len(failed), linestyle="none", marker="x", markersize=9,
                  color=style["color"], transform=axis.get_xaxis_transform(), clip_on=False)


def _log_x(xs) -> bool:
    """Log x when every value is positive and they span a factor of 20 or more (lr sweeps)."""
    values = np.asarray([float(x) for x in xs])
    return len(values) > 1 and bool(np.all(values > 0)) and values.max() / values.min() >= 20


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def sweep_table(curves: list[SweepCurves]) -> Table:
    """Every point of every curve: mean ± std, n, diverged count."""
    rows = []
    for c in curves:
        for (group, network), points in c.points.items():
            for x in sorted(points, key=_sort_key):
                point = points[x]
                value = f"{point.mean:.4f} ± {point.std:.4f}" if point.values else "-"
                rows.append(
                    [c.sweep.label, group or "-", format_value(x), network, value, str(point.n), str(point.diverged)]
                )
    header = ["sweep", "other settings", curves[0].x_key or "setting", "network",
              f"final {curves[0].metric.replace('_', ' ')} (mean ± std)", "n", "diverged"]
    return Table(
        "Sweep points",
        header,
        rows,
        "Every point of the sweep curves; std is over the replicates that did not diverge.",
    )


def _study_without_axis(sweep: Sweep) -> bool:
    """A study whose variants are settings (d2l ex. 1, 3-7): its own section compares them."""
    found = study_record(sweep)
    if found is None:
        return False
    x_key = found[0].get("x_key")
    return not x_key or x_key in found[0].get("variant_keys", [])


def sweep_section(runset: RunSet) -> Section:
    """Final accuracy against the swept setting for every sweep (sweeps with the same x overlaid)."""
    if not runset.sweeps:
        return missing("sweep", TITLE, "No sweep given: sweep curves need a directory whose subdirectories are "
                       "runs that differ in some setting (e.g. lr), optionally repeated over seeds.")
    section = Section("sweep", TITLE, intro=(
        "Sweeps found: " + "; ".join(f"{s.label} ({len(s.runs)} runs)" for s in runset.sweeps) + "."
    ))
    by_key: dict = defaultdict(list)
    plain = [sweep for sweep in runset.sweeps if not _study_without_axis(sweep)]
    if not plain:
        section.notes.append("A study without a swept axis: its comparisons are in the study section.")
    for sweep in plain:
        curves = sweep_curves(sweep)
        by_key[(curves.x_key, curves.metric)].append(curves)
    for curves in by_key.values():
        section.add(plot_sweep(curves))
        section.add(sweep_table(curves))
    for sweep_index, sweep in enumerate(plain):
        curves = sweep_curves(sweep)
        plot = plot_accuracy_per_epoch(curves)
        if plot is not None and len(plain) > 1:
            plot.name += f"_{sweep_index}"
            plot.title += f" ({sweep.label})"
        section.add(plot)
        section.add(trains_table(curves))
        section.add(paired_table(curves))
    return section
