"""Activation distributions (BN15 Fig. 1, S18 Fig. 2, seed notebook Part 1) from the ``activations`` probe."""

from __future__ import annotations

import numpy as np

from normlab.report.animation import write_histogram_animation
from normlab.report.runs import RunSet, finite, union_in_order
from normlab.report.sections import Movie, Plot, Section, points_of, section_of
from normlab.report.series import (
    Series,
    activation_series,
    figure_legend,
    histogram_density,
    index_at,
    layers_note,
    moment_text,
    panel_label,
    shown_layers,
    snapshot_steps,
)
from normlab.report.style import new_figure, shared_legend

TITLE = "Activation distributions"


def draw_histogram(axis, series: Series, layer: str, index: int, several: bool) -> bool:
    """One filled step histogram with its mean ± std in the panel's legend; False if no data."""
    result = histogram_density(series, layer, index)
    if result is None:
        return False
    edges, density = result
    style = series.style()
    label = panel_label(series, moment_text(series, layer, index), several)
    axis.stairs(density, edges, fill=True, alpha=0.25, color=style["color"])
    axis.stairs(density, edges, linewidth=1.3, label=label, **style)
    return True


def plot_activation_histograms(runset: RunSet) -> Plot | None:
    """Histograms of each layer (rows) at a few steps (columns), networks overlaid."""
    series = [s for s in activation_series(runset) if s.meta.get("edges") is not None]
    if not series:
        return None
    layers, every_layer = shown_layers(series)
    steps = snapshot_steps(series)
    figure, axes = new_figure(len(layers), len(steps), height=2.1, sharex=True)
    for row, layer in enumerate(layers):
        for column, step in enumerate(steps):
            axis = axes[row, column]
            drawn = False
            for s in series:
                index = index_at(s, step)
                if index is not None and layer in s.layers:
                    drawn |= draw_histogram(axis, s, layer, index, runset.several)
            axis.set_title(f"{layer}, step {step}")
            axis.set_yticks([])
            if drawn:
                # Headroom above the tallest bar keeps the legend off the distributions.
                axis.set_ylim(0, axis.get_ylim()[1] * 1.45)
                axis.legend(loc="upper left", fontsize=6.5, handlelength=1.2)
            if row == len(layers) - 1:
                axis.set_xlabel("activation value")
    figure_legend(figure, series, runset.several)
    mode = _bn_mode(series)
    caption = (
        "Distribution of every hidden layer's pre-activations (the input to the nonlinearity, i.e. "
        f"after the norm when there is one; BN in {mode} mode) over one training batch, at {len(steps)} "
        "steps spread over training (columns), with the networks overlaid. Each panel's legend gives "
        "each distribution's mean ± std (and the share of values beyond the histogram range when it is "
        "at least 0.5%). Read across a row: distributions that keep their place and width "
        "are stable inputs for the next layer (what BN15 calls reduced internal covariate shift); a "
        "baseline whose histogram moves and spreads while the BN network's stays put is what the seed "
        "notebook (Part 1) and S18 Fig. 2 show. Areas are densities over all values, so a distribution "
        "that spills beyond the fixed histogram range has less visible area."
        + layers_note(layers, every_layer)
    )
    return Plot("activation_histograms", "Activation histograms over training", figure, caption,
                points=points_of(series))


def _bn_mode(series: list[Series]) -> str:
    modes = sorted({str(s.meta.get("bn_mode", "train")) for s in series})
    return "/".join(modes)


def _over_steps(axes_row, series: list[Series], layers: list[str], key: str, several: bool) -> bool:
    """Plot ``<layer>.<key>`` over steps, one panel per layer; True if anything was drawn."""
    drawn = False
    for axis, layer in zip(axes_row, layers):
        for s in series:
            values = s.array(f"{{layer}}.{key}", layer)
            if values is None:
                continue
            axis.plot(s.steps, finite(values), label=s.label(several), linewidth=1.4, **s.style())
            drawn = True
    return drawn


def plot_activation_moments(runset: RunSet) -> Plot | None:
    """Mean, std and mean square of every layer's activations over steps."""
    series = activation_series(runset)
    if not series:
        return None
    layers, every_layer = shown_layers(series)
    rows = [("mean", "mean", False), ("std", "standard deviation", False), ("sq_mean", "mean of squares", True)]
    figure, axes = new_figure(len(rows), len(layers), height=2.2, sharex=True)
    drawn = False
    for row, (key, name, log) in enumerate(rows):
        drawn |= _over_steps(axes[row], series, layers, key, runset.several)
        for column, layer in enumerate(layers):
            axis = axes[row, column]
            axis.set_title(f"{layer}: {name}")
            if log:
                axis.set_yscale("log")
            if row == len(rows) - 1:
                axis.set_xlabel("step")
    if not drawn:
        return None
    shared_legend(figure)
    caption = (
        "Mean (top), standard deviation (middle) and mean of squares (bottom, log scale; the "
        "activation magnitude of d2l exercise 3) of each hidden layer's pre-activations over training, "
        "over all units and the batch. Flat curves mean a layer's input distribution does not shift: "
        "with BN the mean stays near beta and the std near gamma, while the baseline's moments drift "
        "as the earlier layers learn (seed notebook Part 1, 'Layer outputs (mean / standard "
        "deviation)')." + layers_note(layers, every_layer)
    )
    return Plot("activation_moments", "Layer mean and std over training", figure, caption, points=points_of(series))


def plot_tracked_percentiles(runset: RunSet) -> Plot | None:
    """BN15 Fig. 1(b, c): the 15/50/85th percentiles of one tracked unit, one panel per network."""
    series = [s for s in activation_series(runset) if _percentiles(s) is not None]
    if not series:
        return None
    networks = union_in_order([[s.network] for s in series])
    # One y scale for all panels: BN15 contrasts how far each network's percentiles move.
    figure, axes = new_figure(1, len(networks), height=3.0, sharex=True, sharey=True)
    for axis, network in zip(axes[0], networks):
        for s in (s for s in series if s.network == network):
            values = _percentiles(s)
            style = s.style()
            axis.plot(s.steps, finite(values[:, 1]), linewidth=1.6, label=s.label(runset.several), **style)
            for column in (0, 2):
                axis.plot(s.steps, finite(values[:, column]), linewidth=0.9, alpha=0.8, **style)
            axis.fill_between(s.steps, finite(values[:, 0]), finite(values[:, 2]), color=style["color"], alpha=0.12)
        axis.set_title(f"{network}: unit {_tracked_name(series, network)}")
        axis.set_xlabel("step")
    axes[0, 0].set_ylabel("pre-activation value")
    shared_legend(figure)
    caption = (
        "The 15th, 50th (thick) and 85th percentiles of one tracked unit's pre-activation over each "
        "training batch, over training, one panel per network (BN15 Fig. 1(b) without BN and (c) with "
        "BN, which tracks a sigmoid input of the last hidden layer). Without BN the distribution of "
        "this single input shifts and widens as training goes on; with BN it stays nearly constant. "
        "Flat, parallel lines are the stable case."
    )
    return Plot("tracked_percentiles", "Tracked unit percentiles (BN15 Fig. 1)", figure, caption,
                points=points_of(series))


def _percentiles(series: Series):
    values = series.array("tracked.percentiles")
    if values is None or np.shape(values)[1] != 3:  # the figure draws the 15/50/85th
        return None
    return np.asarray(values, dtype=float)


def _tracked_name(series: list[Series], network: str) -> str:
    for s in series:
        if s.network == network and s.meta.get("tracked_layer") is not None:
            return f"{s.meta.get('tracked_unit', 0)} of {s.meta['tracked_layer']}"
    return "(tracked)"


def plot_unit_moments(runset: RunSet) -> Plot | None:
    """Per-unit mean and std over training: median over units and the 10-90% band across units."""
    series = [s for s in activation_series(runset)
              if any(s.array("{layer}.unit_mean", layer) is not None for layer in s.layers)]
    if not series:
        return None
    layers, every_layer = shown_layers(series)
    rows = [("unit_mean", "per-unit mean"), ("unit_std", "per-unit std")]
    figure, axes = new_figure(len(rows), len(layers), height=2.4, sharex=True)
    for row, (key, name) in enumerate(rows):
        for column, layer in enumerate(layers):
            axis = axes[row, column]
            for s in series:
                values = s.array(f"{{layer}}.{key}", layer)
                if values is None:
                    continue
                low, median, high = np.nanpercentile(finite(values), [10, 50, 90], axis=1)
                style = s.style()
                axis.plot(s.steps, median, linewidth=1.4, label=s.label(runset.several), **style)
                axis.fill_between(s.steps, low, high, color=style["color"], alpha=0.15)
            axis.set_title(f"{layer}: {name}")
            if row == len(rows) - 1:
                axis.set_xlabel("step")
    shared_legend(figure)
    caption = (
        "How each unit's (channel's) own mean and std over the batch move during training: the line is "
        "the median over the units of a layer and the shaded band spans the 10th to 90th percentile "
        "across units. A band that stays narrow and in place means every unit keeps its distribution "
        "(BN pins each unit to its gamma and beta); a band that widens or drifts means units shift "
        "individually, which the per-layer averages above can hide (seed notebook Part 1 follows one "
        "unit of Dense_2 this way)." + layers_note(layers, every_layer)
    )
    return Plot("unit_moments", "Per-unit mean and std over training", figure, caption, points=points_of(series))



def histogram_movie(runset: RunSet) -> Movie | None:
    """The animated histograms of every layer, networks overlaid (seed notebooks Part 1 and 2)."""
    series = [s for s in activation_series(runset) if s.meta.get("edges") is not None]
    if not series:
        return None
    layers = union_in_order(s.layers for s in series)

    def write(stem, video=None):
        return write_histogram_animation(series, layers, stem, several=runset.several, video=video)

    caption = (
        "The histograms of every hidden layer's pre-activations at every probe measurement, played "
        "over training (one panel per layer, networks overlaid in their colors, mean ± std of each in "
        "the legend; at most 60 evenly spaced frames). This is the animation of the seed notebooks: "
        "watch whether a distribution stays in place (BN) or slides and spreads (baseline)."
    )
    return Movie("activation_histograms", "Activation histograms (animation)", write, caption)


def activations_section(runset: RunSet) -> Section:
    """Histograms (static and animated), moments, per-unit moments and the tracked unit."""
    return section_of(
        "activations", TITLE,
        (plot_activation_histograms(runset), histogram_movie(runset), plot_activation_moments(runset),
         plot_unit_moments(runset), plot_tracked_percentiles(runset)),
        intro="From the activations probe: per-layer histograms on fixed bins, moments, per-unit moments and "
              "one tracked unit's percentiles, measured on the training batch of the probe step.",
        missing_note="No activations probe data in these runs (add 'activations' to the probes, e.g. "
                     "--set probes=activations,gradients,distance).")
