"""One look for every figure: a fixed color per network (= norm name), a line style per run.

The color of a network never depends on which other networks a figure shows, so "batch" is the
same red in the training curves, the histograms, the animation and the sweep curves of every
report. Runs overlaid in one figure are told apart by line style (and hatch, for bands).
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Baseline blue and BN red as in the seed notebooks; the BN variants in warm or related hues.
NETWORK_COLORS = {
    "none": "#1f77b4",
    "batch": "#d62728",
    "noisy": "#ff7f0e",
    "l1": "#e377c2",
    "l2": "#8c564b",
    "linf": "#bcbd22",
    "mean_only": "#17becf",
    "var_only": "#9467bd",
    "no_affine": "#7f7f7f",
    "frozen_gamma": "#f7b6d2",
    "frozen_beta": "#c49c94",
    "layer": "#2ca02c",
    "group": "#98df8a",
    "rms": "#393b79",
}
# Unknown names (a user's own norm) get a color from this list, picked by a hash of the name so
# that it is stable across figures and reports.
_EXTRA_COLORS = ("#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1")
NETWORK_NAMES = {"none": "none (baseline)", "batch": "batch (BN)"}

RUN_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
RUN_HATCHES = (None, "//", "\\\\", "..", "xx", "++")
RUN_MARKERS = ("o", "s", "^", "D", "v", "P")

FIGURE_WIDTH = 10.0  # inches; at DPI this is the report's column width
DPI = 100

_RC = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.framealpha": 0.8,
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
}


def network_color(name: str) -> str:
    """The fixed color of network (norm) ``name``."""
    if name in NETWORK_COLORS:
        return NETWORK_COLORS[name]
    return _EXTRA_COLORS[zlib.crc32(name.encode()) % len(_EXTRA_COLORS)]


def network_label(name: str) -> str:
    """How a network is named in legends ("none (baseline)", "batch (BN)", else the norm name)."""
    return NETWORK_NAMES.get(name, name)


def run_linestyle(index: int):
    return RUN_LINESTYLES[index % len(RUN_LINESTYLES)]


def run_hatch(index: int):
    return RUN_HATCHES[index % len(RUN_HATCHES)]


def run_marker(index: int) -> str:
    return RUN_MARKERS[index % len(RUN_MARKERS)]


def series_label(run_label: str, network: str, *, several_runs: bool) -> str:
    """Legend entry of one (run, network) series; the run is named only when runs are overlaid."""
    return f"{run_label}: {network_label(network)}" if several_runs else network_label(network)


@contextmanager
def report_style():
    """The rc settings of every report figure (restored afterwards)."""
    with matplotlib.rc_context(_RC):
        yield


def new_figure(rows: int = 1, columns: int = 1, *, height: float = 3.0, width: float = FIGURE_WIDTH,
               sharex: bool = False, sharey: bool = False, squeeze: bool = False):
    """A figure with a ``rows x columns`` grid, constrained layout, ``height`` inches per row.

    Built on ``matplotlib.figure.Figure`` with an Agg canvas, not pyplot: no global state, so a
    report can be written from any thread and never opens a window.
    """
    figure = Figure(figsize=(width, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, sharex=sharex, sharey=sharey, squeeze=squeeze)
    return figure, axes


def grid_shape(panels: int, max_columns: int = 4) -> tuple[int, int]:
    """Rows and columns for ``panels`` panels, at most ``max_columns`` wide."""
    columns = min(max(panels, 1), max_columns)
    rows = -(-max(panels, 1) // columns)
    return rows, columns


LEGEND_CHARACTERS_PER_ROW = 150  # what fits across FIGURE_WIDTH at legend font size


def legend_columns(labels: list[str]) -> int:
    """As many columns as the longest label allows across the figure (long run names: fewer)."""
    longest = max((len(label) for label in labels), default=1) + 6  # the handle and the gap
    return max(1, min(len(labels), LEGEND_CHARACTERS_PER_ROW // longest))


def shared_legend(figure) -> None:
    """One legend below all panels with every labelled line of the figure, each label once.

    Multi-panel figures show the same series in every panel; one legend outside the panels
    keeps long names (runs overlaid) from covering the data or squeezing the panels.
    """
    handles, labels = [], []
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=legend_columns(labels))


def hide_unused(axes, used: int) -> None:
    """Switch off the panels of a grid beyond the first ``used``."""
    for axis in list(axes.flat)[used:]:
        axis.set_visible(False)
