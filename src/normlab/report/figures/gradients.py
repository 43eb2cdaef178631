"""Gradient statistics (seed notebook Part 1 "smoother gradient updates"; B18 heavy tails)."""

from __future__ import annotations

import numpy as np

from normlab.report.runs import RunSet, finite, union_in_order
from normlab.report.sections import Plot, Section, points_of, section_of
from normlab.report.series import Series, layers_note, probe_series, select_layers
from normlab.report.style import new_figure, shared_legend

PROBE = "gradients"
TITLE = "Gradient statistics"


def gradient_series(runset: RunSet) -> list[Series]:
    """Every (run, network) with gradients probe data."""
    return probe_series(runset, PROBE)


def plot_tracked_gradient(runset: RunSet) -> Plot | None:
    """The gradient of the one tracked kernel entry over steps, networks overlaid."""
    series = [s for s in gradient_series(runset) if s.array("tracked") is not None]
    if not series:
        return None
    figure, axes = new_figure(1, 1, height=3.0)
    axis = axes[0, 0]
    for s in series:
        axis.plot(
            s.steps, finite(s.array("tracked")), linewidth=1.2, alpha=0.9, label=s.label(runset.several), **s.style()
        )
    axis.axhline(0.0, color="black", linewidth=0.6)
    axis.set_xlabel("step")
    axis.set_ylabel("gradient")
    shared_legend(figure)
    meta = series[0].meta
    where = (
        f"entry {meta.get('tracked_index', 0)} (flat index) of {meta['tracked_layer']}'s kernel"
        if meta.get("tracked_layer")
        else "one kernel entry"
    )
    caption = (
        f"The gradient of the training loss with respect to a single weight, {where}, at every probe "
        "step (train mode, the gradient the optimizer used). The seed notebook (Part 1, 'Gradient "
        "updates for Dense_3') finds the BN network's gradient much smoother: smaller jumps from "
        "step to step are better, as they mean the gradient at one step predicts the next."
    )
    return Plot("tracked_gradient", "Gradient of one tracked weight", figure, caption, points=points_of(series))


def plot_gradient_moments(runset: RunSet) -> Plot | None:
    """Per-layer mean, std and norm of the kernel gradient over steps."""
    series = gradient_series(runset)
    if not series:
        return None
    every_layer = union_in_order(s.layers for s in series)
    layers = select_layers(every_layer)
    rows = [("mean", "mean", "linear"), ("std", "std", "log"), ("norm", "L2 norm", "log")]
    figure, axes = new_figure(len(rows), len(layers), height=2.1, sharex=True)
    drawn = False
    for row, (key, name, scale) in enumerate(rows):
        for column, layer in enumerate(layers):
            axis = axes[row, column]
            for s in series:
                values = s.array(f"{{layer}}.{key}", layer)
                if values is None:
                    continue
                axis.plot(s.steps, finite(values), linewidth=1.2, label=s.label(runset.several), **s.style())
                drawn = True
            axis.set_title(f"{layer}: gradient {name}", fontsize=9)
            _set_scale(axis, scale)
            if row == len(rows) - 1:
                axis.set_xlabel("step")
    if not drawn:
        return None
    shared_legend(figure)
    caption = (
        "Mean (top), standard deviation (middle, log) and L2 norm (bottom, log) of "
        "the gradient of each weight layer's kernel over training. The seed notebook (Part 1) finds "
        "the BN network's gradient updates have smaller standard deviation and mean, especially early "
        "in training; steadier, smaller curves mean a smoother optimization." + layers_note(layers, every_layer)
    )
    return Plot("gradient_moments", "Gradient mean, std and norm per layer", figure, caption,
                points=points_of(series))


def _set_scale(axis, scale: str) -> None:
    if scale == "log":
        axis.set_yscale("log")
    else:  # gradient means are tiny and change sign: linear with a shared exponent
        axis.axhline(0.0, color="black", linewidth=0.5)
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))


def magnitude_histogram(series: Series, layer: str, index: int):
    """(edges, fraction of entries per bin) of |gradient| of ``layer`` at measurement ``index``.

    The probe bins signed values on edges symmetric around 0 (``-e_k .. -e_0, 0, e_0 .. e_k``);
    folding the negative bins onto the positive ones gives the magnitude histogram on log-spaced
    bins. The two bins touching 0 become one bin ``[e_0 / 10, e_0]`` so a log axis can show it.
    """
    counts = series.array("{layer}.hist", layer)
    edges = series.meta.get("edges")
    if counts is None or edges is None:
        return None
    edges = np.asarray(edges, dtype=float)
    if len(edges) % 2 == 0 or not np.allclose(edges, -edges[::-1]) or edges[len(edges) // 2] != 0:
        return None  # not the symmetric layout the probe documents
    counts = counts[index].astype(float)
    total = counts.sum()
    if total <= 0:
        return None
    half = len(counts) // 2
    folded = counts[half:] + counts[:half][::-1]
    positive = edges[len(edges) // 2 + 1 :]
    return np.concatenate([[positive[0] / 10], positive]), folded / total


def _steps_text(series: list[Series], position: int) -> str:
    """"step 0" when every series was measured at the same step there, else the range."""
    steps = sorted({int(s.steps[position]) for s in series})
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"


def plot_gradient_histograms(runset: RunSet) -> Plot | None:
    """Histograms of |gradient| at the first and the last measurement, log-log (B18 heavy tails)."""
    series = [s for s in gradient_series(runset) if s.meta.get("edges") is not None]
    if not series:
        return None
    every_layer = union_in_order(s.layers for s in series)
    layers = select_layers(every_layer)
    moments = [("first", 0), ("last", -1)]
    figure, axes = new_figure(len(moments), len(layers), height=2.4, sharex=True, sharey=True)
    floor, drawn = 1.0, False
    for row, (when, position) in enumerate(moments):
        for column, layer in enumerate(layers):
            axis = axes[row, column]
            for s in series:
                result = magnitude_histogram(s, layer, position % len(s.steps))
                if result is None:
                    continue
                edges, fraction = result
                floor = min(floor, 0.5 * fraction[fraction > 0].min())
                axis.stairs(np.where(fraction > 0, fraction, 1e-12), edges, linewidth=1.3,
                            label=s.label(runset.several), baseline=None, **s.style())
                drawn = True
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_title(f"{layer}: {when} ({_steps_text(series, position)})", fontsize=9)
            if row == len(moments) - 1:
                axis.set_xlabel("|gradient entry|")
            if column == 0:
                axis.set_ylabel("fraction of entries")
    if not drawn:
        return None
    shared_legend(figure)
    axes[0, 0].set_ylim(bottom=floor)
    caption = (
        "Distribution of the magnitudes of the entries of each layer's kernel gradient at the first "
        "probe measurement (top; at initialization when step 0 is probed) and the last one (bottom). "
        "Both axes are logarithmic (bins grow by a factor of 10^(1/3); the leftmost bin collects "
        "everything below the smallest bin edge, exact zeros included, e.g. from inputs that are 0 or "
        "from ReLU units that are off for the whole batch), so the tails are visible at every scale. B18 (Sec. 3) "
        "finds that without BN the gradients at initialization are heavy-tailed, with a few entries "
        "orders of magnitude larger than the rest; a curve that falls off quickly to the right is the "
        "better-conditioned case." + layers_note(layers, every_layer)
    )
    return Plot("gradient_histograms", "Gradient magnitude histograms", figure, caption, points=points_of(series))


def gradients_section(runset: RunSet) -> Section:
    """The tracked weight's gradient, per-layer gradient moments and magnitude histograms."""
    return section_of(
        "gradients", TITLE,
        (plot_tracked_gradient(runset), plot_gradient_moments(runset), plot_gradient_histograms(runset)),
        intro="From the gradients probe: the gradient of the training loss that the optimizer used at the "
              "probe step (train mode), per weight layer.",
        missing_note="No gradients probe data in these runs (add 'gradients' to the probes).")
