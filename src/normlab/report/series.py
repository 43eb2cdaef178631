"""Probe series for the figures: one ``Series`` per (run, network) of a probe, layer selection,
steps and histogram densities.

Serves every series figure: activations, drift, gradients, the Santurkar probes and the animation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normlab.report.runs import (
    ReportRun,
    RunSet,
    network_series,
    probe_array,
    probe_layers,
    probe_meta,
    union_in_order,
)
from normlab.report.style import legend_columns, network_color, run_linestyle, series_label

PROBE = "activations"
MAX_LAYERS = 6  # static figures show at most this many layers (the animation shows all)
SNAPSHOTS = 4


@dataclass
class Series:
    """One network of one run with its data of one probe."""

    run: ReportRun
    network: str
    arrays: dict
    layers: list[str]
    meta: dict
    probe: str

    def array(self, key: str, layer: str | None = None) -> np.ndarray | None:
        """The probe's declared output ``key`` (``report.runs.probe_array``), (T, *shape) or None."""
        return probe_array(self.arrays, self.probe, key, layer)

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self.arrays["step"])

    def label(self, several: bool) -> str:
        return series_label(self.run.label, self.network, several_runs=several)

    def style(self) -> dict:
        return {"color": network_color(self.network), "linestyle": run_linestyle(self.run.index)}


def probe_series(runset: RunSet, probe: str) -> list[Series]:
    """Every (run, network) with data for ``probe``."""
    return [
        Series(run, network, arrays, probe_layers(run, probe, network, arrays), probe_meta(run, probe, network), probe)
        for run, network, arrays in network_series(runset.runs, probe)
    ]


def activation_series(runset: RunSet) -> list[Series]:
    """Every (run, network) with activations data."""
    return probe_series(runset, PROBE)


def select_layers(layers: list[str], limit: int = MAX_LAYERS) -> list[str]:
    """At most ``limit`` layers, evenly spaced and always with the first and the last."""
    if len(layers) <= limit:
        return list(layers)
    positions = np.unique(np.round(np.linspace(0, len(layers) - 1, limit)).astype(int))
    return [layers[i] for i in positions]


def shown_layers(series: list[Series], limit: int = MAX_LAYERS) -> tuple[list[str], list[str]]:
    """(layers drawn, all layers) over every series."""
    every_layer = union_in_order(s.layers for s in series)
    return select_layers(every_layer, limit), every_layer


def layers_note(shown: list[str], every_layer: list[str]) -> str:
    """A caption sentence when not every layer fits in a static figure."""
    if len(shown) == len(every_layer):
        return ""
    return (f" Of the {len(every_layer)} layers, {len(shown)} evenly spaced ones are shown "
            f"({', '.join(shown)}); the animation shows all of them.")


def snapshot_steps(series: list[Series], count: int = SNAPSHOTS) -> list[int]:
    """``count`` measurement steps spread evenly over training (always the first and the last)."""
    steps = np.unique(np.concatenate([s.steps for s in series]))
    positions = np.unique(np.round(np.linspace(0, len(steps) - 1, min(count, len(steps)))).astype(int))
    return [int(steps[i]) for i in positions]


def index_at(series: Series, step: int) -> int | None:
    """Index of ``series``' measurement at ``step`` or the nearest one before it; None if it had stopped."""
    steps = series.steps
    if step > steps[-1] + _spacing(steps):
        return None  # the network stopped (diverged) before this step: show nothing, not stale data
    before = np.nonzero(steps <= step)[0]
    return int(before[-1]) if len(before) else None


def _spacing(steps: np.ndarray) -> int:
    return int(np.max(np.diff(steps))) if len(steps) > 1 else 0


def histogram_density(series: Series, layer: str, index: int):
    """(edges, density) of ``layer`` at measurement ``index``: counts / (all values x bin width).

    Dividing by all values, including those beyond the edges, keeps densities of a network whose
    activations spill out of the range honest (its curve then has less area).
    """
    counts = series.array("{layer}.hist", layer)
    edges = series.meta.get("edges")
    if counts is None or edges is None:
        return None
    edges = np.asarray(edges, dtype=float)
    counts = counts[index].astype(float)
    outside = series.array("{layer}.outside", layer)
    total = counts.sum() + (float(outside[index]) if outside is not None else 0.0)
    if total <= 0:
        return None
    return edges, counts / (total * np.diff(edges))


def moment_text(series: Series, layer: str, index: int) -> str:
    """"mean ± std" of ``layer`` at ``index`` (as in the seed notebook's legends), plus the share
    of values beyond the histogram range when it is large enough to matter (>= 0.5%)."""
    mean = series.array("{layer}.mean", layer)
    std = series.array("{layer}.std", layer)
    if mean is None or std is None:
        return ""
    text = f"{float(mean[index]):.2f} ± {float(std[index]):.2f}"
    share = outside_share(series, layer, index)
    edges = series.meta.get("edges")
    if share is not None and share >= 0.005 and edges:
        text += f", {100 * share:.0f}% beyond ±{max(abs(edges[0]), abs(edges[-1])):g}"
    return text


def panel_label(series: Series, text: str, several: bool) -> str:
    """A histogram panel's legend entry: "none: 0.12 ± 1.30" for one run; only the numbers when
    runs are overlaid (long run names would not fit a panel; the figure legend names the lines)."""
    return text if several else f"{series.network}: {text}"


def figure_legend(figure, series: list[Series], several: bool) -> None:
    """One legend below the panels naming every line (network, and run when overlaid)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linewidth=1.5, **s.style()) for s in series]
    labels = [s.label(several) for s in series]
    figure.legend(handles, labels, loc="outside lower center", ncols=legend_columns(labels))


def outside_share(series: Series, layer: str, index: int) -> float | None:
    """Fraction of ``layer``'s values outside the histogram's edges at ``index``."""
    counts = series.array("{layer}.hist", layer)
    outside = series.array("{layer}.outside", layer)
    if counts is None or outside is None:
        return None
    total = float(counts[index].sum()) + float(outside[index])
    return float(outside[index]) / total if total > 0 else None
