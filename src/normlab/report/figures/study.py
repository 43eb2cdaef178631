"""What a study asks of a sweep over seeds: the test accuracy per epoch for each swept value (one
panel per network variant, as d2l plots exercise 2), the largest value at which each variant still
trains, and each variant's paired difference from the baseline per seed (``report.paired``).

"Trains" (stated in the table): the final test accuracy is above ``TRAINS_FACTOR`` x chance
(1 / number of classes: 20% for 10 classes) in a majority of the seeds; a diverged run does not
train. The largest value where *every* seed trains is given beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict

import matplotlib
import numpy as np
import pandas as pd

from normlab.report.paired import METHOD, paired_difference, summarize
from normlab.report.runs import ReportRun, diverged_steps, eval_rows, hashable, is_number
from normlab.report.sections import Plot, Table
from normlab.report.style import grid_shape, hide_unused, network_label, new_figure, shared_legend
from normlab.store import format_value

TRAINS_FACTOR = 2.0


def _sort_key(value):
    return (0, float(value), "") if is_number(value) else (1, 0.0, format_value(value))


def epoch_scale(report_run: ReportRun) -> tuple[float, str]:
    """(steps per x unit, unit name): epochs when the run was set in epochs, else steps."""
    config, info = report_run.run.config, report_run.run.info
    total, epochs = info.get("total_steps"), config.get("epochs")
    if not config.get("steps") and not config.get("full_batch") and epochs and total:
        return total / epochs, "epoch"
    return 1.0, "step"


def chance_level(runs: list[ReportRun]) -> float | None:
    """1 / the number of classes of the runs' dataset (their start views, else the registry)."""
    for report_run in runs:
        try:
            classes = report_run.run.read_json("start/start.json")["data"]["num_classes"]
        except Exception:  # no start views (older or synthetic runs): ask the data registry
            try:
                from normlab.data import dataset_shape

                classes = dataset_shape(report_run.run.config.get("dataset", ""))[1]
            except Exception:
                continue
        if classes:
            return 1.0 / classes
    return None


def _variant(curves, report_run: ReportRun) -> str:
    config = report_run.run.config
    return ", ".join(f"{key}={format_value(config.get(key))}" for key in curves.group_keys)


def plot_accuracy_per_epoch(curves) -> Plot | None:
    """One panel per (variant, network): test accuracy over training for each value of the swept
    setting, the mean over seeds with a band of one standard deviation, n in the legend."""
    if curves.metric != "test_accuracy":
        return None
    series: dict = defaultdict(lambda: defaultdict(list))  # (group, network) -> x -> [(seed, frame)]
    unit = "step"
    for report_run in curves.sweep.runs:
        scale, unit = epoch_scale(report_run)
        x = hashable(report_run.run.config.get(curves.x_key)) if curves.x_key else "all runs"
        for network in report_run.networks:
            rows = eval_rows(report_run, network)
            if rows is None or not rows["test_accuracy"].notna().any():
                continue
            frame = pd.Series(rows["test_accuracy"].to_numpy(float), index=rows["step"].to_numpy() / scale)
            diverged = network in diverged_steps(report_run)
            series[(_variant(curves, report_run), network)][x].append((diverged, frame))
    if not series:
        return None
    panels = sorted(series, key=lambda key: (key[0], _network_index(curves, key[1])))
    rows, columns = grid_shape(len(panels), max_columns=3)
    figure, axes = new_figure(rows, columns, height=3.0, sharey=True)
    xs = sorted({x for per_x in series.values() for x in per_x}, key=_sort_key)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(len(xs), 1)))
    counts = []
    for axis, (group, network) in zip(axes.flat, panels):
        for color, x in zip(colors, xs):
            members = series[(group, network)].get(x)
            if not members:
                continue
            table = pd.concat([frame for _d, frame in members], axis=1)
            mean, spread, n = table.mean(axis=1), table.std(axis=1, ddof=1), table.count(axis=1)
            diverged_count = sum(d for d, _f in members)
            counts.append(len(members))
            label = f"{curves.x_key}={format_value(x)}" if curves.x_key else "all runs"
            label += f" (n={len(members)}" + (f", {diverged_count} diverged)" if diverged_count else ")")
            axis.plot(mean.index, mean.to_numpy(), color=color, linewidth=1.4, marker=".", label=label)
            if (n > 1).any():
                axis.fill_between(mean.index, (mean - spread).to_numpy(), (mean + spread).to_numpy(), color=color,
                                  alpha=0.15, linewidth=0)
        axis.set_title(network_label(network) + (f" [{group}]" if group else ""))
        axis.set_xlabel(unit)
        axis.set_ylabel("test accuracy")
    hide_unused(axes, len(panels))
    shared_legend(figure)
    n_text = f"n = {min(counts)}" if min(counts) == max(counts) else f"n = {min(counts)}-{max(counts)}"
    caption = (
        f"Test accuracy over training ({unit}s) for each value of '{curves.x_key or 'the runs'}', one panel per "
        f"network{' and variant' if curves.group_keys else ''}, as d2l exercise 2 plots it (one panel without BN, "
        f"one with). Lines are the mean over seeds ({n_text} per line, in the legend), bands one standard "
        "deviation; a diverged run stops where it diverged and is counted in the legend. A network that keeps "
        "its curves high at large learning rates is the one with the wider usable range (B18)."
    )
    return Plot(f"per_epoch_{_slug(curves.x_key or 'runs')}", f"Test accuracy per {unit} for each "
                f"{curves.x_key or 'run'}", figure, caption, points=tuple(counts), unit="seeds")


def _network_index(curves, network: str) -> int:
    order = [n for r in curves.sweep.runs for n in r.networks]
    return order.index(network) if network in order else len(order)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def trains(point, threshold: float) -> tuple[bool, bool]:
    """(trains in a majority of seeds, trains in every seed): final accuracy > ``threshold``; a
    diverged seed (NaN) does not train."""
    finals = [value for value in point.seeds.values()]
    good = [math.isfinite(v) and v > threshold for v in finals]
    return (sum(good) * 2 > len(good), bool(good) and all(good))


def trains_table(curves) -> Table | None:
    """Per variant and network: the largest value of the swept setting at which it trains."""
    if curves.metric != "test_accuracy" or curves.x_key is None:
        return None
    if not all(is_number(x) for points in curves.points.values() for x in points):
        return None  # "the largest value that trains" needs an ordered, numeric setting
    chance = chance_level(curves.sweep.runs)
    if chance is None:
        return None
    threshold = TRAINS_FACTOR * chance
    rows = []
    for (group, network), points in sorted(curves.points.items(), key=lambda i: (i[0][0], _network_index(curves,
                                                                                                        i[0][1]))):
        xs = sorted(points, key=_sort_key)
        majority = [x for x in xs if trains(points[x], threshold)[0]]
        every = [x for x in xs if trains(points[x], threshold)[1]]
        best = majority[-1] if majority else None
        summary = summarize(points[best].seeds.values()) if best is not None else None
        failing = [x for x in xs if x not in majority]
        rows.append([
            group or "-", network,
            ", ".join(format_value(x) for x in majority) or "-",
            format_value(best) if best is not None else f"none of {format_value(xs[0])}..{format_value(xs[-1])}",
            format_value(every[-1]) if every else "-",
            summary.text(scale=100, digits=2) if summary is not None else "-",
            ", ".join(f"{format_value(x)} ({_failure(points[x])})" for x in failing) or "-",
        ])
    caption = (
        f"'Trains' means: the final test accuracy is above {TRAINS_FACTOR:g} x chance "
        f"({100 * threshold:.0f}% here, chance = {100 * chance:.0f}%) in a majority of the seeds; a diverged run does "
        f"not train. 'every seed': the largest {curves.x_key} at which all seeds train. The accuracy is the mean ± "
        "std over the seeds at the largest value (n seeds; a diverged seed counts as missing). The values at which "
        "a network does not train are listed with how they fail (smaller ones too: a small learning rate can be "
        "too slow within the run). d2l exercise 2 asks how large the learning rate can be before "
        "optimization fails, with and without BN."
    )
    return Table(f"Largest {curves.x_key} that trains", ["variant", "network", "trains at (majority of seeds)",
                                                          f"largest {curves.x_key}", "in every seed",
                                                          "test accuracy there, %", "does not train at (why)"],
                 rows, caption)


def _failure(point) -> str:
    diverged = sum(1 for v in point.seeds.values() if not math.isfinite(v))
    summary = summarize(point.seeds.values())
    parts = []
    if diverged:
        parts.append(f"{diverged} of {len(point.seeds)} diverged")
    if summary.n:
        parts.append(f"accuracy {100 * summary.mean:.1f}%")
    return ", ".join(parts) or "no data"


def paired_table(curves, baseline_network: str | None = None) -> Table | None:
    """At every swept value and variant: each network's final metric (mean ± std, n) and its paired
    difference from the baseline network (the group's first) per seed, with its 95% t-interval."""
    rows = []
    scale, digits = (100, 2) if curves.metric == "test_accuracy" else (1, 4)
    for (group, network), points in curves.points.items():
        baseline = baseline_network or _baseline(curves, group)
        if network == baseline or (group, baseline) not in curves.points:
            continue
        for x in sorted(points, key=_sort_key):
            base = curves.points[(group, baseline)].get(x)
            if base is None:
                continue
            difference = paired_difference(points[x].seeds, base.seeds)
            rows.append([
                group or "-", format_value(x) if curves.x_key else "-", network,
                summarize(points[x].seeds.values()).text(scale, digits),
                summarize(base.seeds.values()).text(scale, digits),
                _difference_text(difference, scale, digits),
                "yes" if difference.excludes_zero else ("no" if difference.has_interval else "n < 2"),
            ])
    if not rows:
        return None
    unit = "percentage points" if scale == 100 else "loss"
    caption = (
        f"Each network against the baseline network of its group, seed by seed ({METHOD}). The members of one "
        "seed share their initial weights and their batches, so the difference is paired: its interval is far "
        f"narrower than two independent bands would suggest. Values in {unit}; n is the number of seeds (pairs). "
        "'excludes 0': the interval lies entirely on one side of 0. With n = 1 no interval is given."
    )
    metric = "test accuracy, %" if scale == 100 else curves.metric.replace("_", " ")
    return Table("Paired differences from the baseline", [
        "variant", curves.x_key or "setting", "network", f"final {metric}", "baseline",
        "difference [95% CI] (n)", "excludes 0"], rows, caption)


def _difference_text(difference, scale: float, digits: int) -> str:
    if difference.n == 0:
        return f"- (no seed with both finite: {difference.unpaired} unpaired, e.g. diverged)"
    return difference.text(scale, digits) + (f", {difference.unpaired} unpaired" if difference.unpaired else "")


def _baseline(curves, group: str) -> str:
    networks = [network for (g, network) in curves.points if g == group]
    return min(networks, key=lambda network: _network_index(curves, network))
