"""The norms' learned gamma and beta against their defaults 1 and 0 (d2l exercise 5)."""

from __future__ import annotations

import numpy as np

from normlab.report.runs import RunSet, finite, network_series, probe_array, probe_layers, probe_meta, union_in_order
from normlab.report.sections import Plot, Section, missing
from normlab.report.style import network_color, new_figure, run_linestyle, series_label, shared_legend

PROBE = "bn_parameters"
TITLE = "BN parameters (gamma and beta)"
FACTORS = (("gamma", 1.0), ("beta", 0.0))
BINS = 24


def norm_layers(report_run, network, arrays) -> list[str]:
    """The layers with a stored gamma (the norm layers with an affine scale)."""
    layers = probe_layers(report_run, PROBE, network, arrays)
    return [layer for layer in layers if probe_array(arrays, PROBE, "{layer}.gamma", layer) is not None]


def _data(runset: RunSet):
    return [(r, n, a) for r, n, a in network_series(runset.runs, PROBE) if norm_layers(r, n, a)]


def _frozen(report_run, network, layer: str, factor: str) -> bool:
    factors = probe_meta(report_run, PROBE, network).get("factors", {}).get(layer, {})
    return factors.get(factor) in ("frozen", "absent")


def plot_histograms(runset: RunSet) -> Plot | None:
    """Per norm layer (columns), gamma (top) and beta (bottom) of the last measurement, one
    outline histogram per network, the default marked."""
    data = _data(runset)
    if not data:
        return None
    layers = union_in_order(norm_layers(r, n, a) for r, n, a in data)
    figure, axes = new_figure(2, len(layers), height=2.6, squeeze=False)
    steps = sorted({int(np.asarray(a["step"])[-1]) for _r, _n, a in data})
    for column, layer in enumerate(layers):
        for row, (factor, default) in enumerate(FACTORS):
            axis = axes[row, column]
            stored = [(r, n, probe_array(a, PROBE, f"{{layer}}.{factor}", layer)) for r, n, a in data]
            series = [(r, n, values[-1]) for r, n, values in stored if values is not None]
            pooled = np.concatenate([values for _r, _n, values in series]) if series else np.asarray([default])
            low, high = min(float(pooled.min()), default), max(float(pooled.max()), default)
            if not high > low:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, BINS + 1)
            for report_run, network, values in series:
                if _frozen(report_run, network, layer, factor):
                    continue  # a fixed factor is its default: one spike would hide the others
                axis.hist(values, bins=edges, histtype="step", linewidth=1.4, color=network_color(network),
                          linestyle=run_linestyle(report_run.index),
                          label=series_label(report_run.label, network, several_runs=runset.several))
            axis.axvline(default, color="black", linestyle=":", linewidth=1.0,
                         label="default (gamma 1, beta 0)")
            axis.set_title(f"{layer}: {factor}")
            if column == 0:
                axis.set_ylabel("units (channels)")
    shared_legend(figure)
    at = f"step {steps[0]}" if len(steps) == 1 else f"steps {', '.join(map(str, steps))}"
    caption = (
        f"The learned scale gamma (top) and shift beta (bottom) of every unit (channel) of each norm layer at the "
        f"last measurement ({at}), one outline histogram per network; the dotted line is the default the "
        "factor starts from (gamma 1, beta 0). d2l exercise 5 asks what the network does with them: spread "
        "away from the defaults means the layer uses its affine map to undo part of the normalization; a "
        "network with fixed factors (no_affine, frozen_gamma/frozen_beta) is left out of the panels of its fixed "
        "factor."
    )
    return Plot("bn_parameter_histograms", "Gamma and beta against their defaults", figure, caption)


def plot_deviation(runset: RunSet) -> Plot | None:
    """mean |gamma - 1| and mean |beta| of each norm layer over training."""
    data = _data(runset)
    if not data:
        return None
    layers = union_in_order(norm_layers(r, n, a) for r, n, a in data)
    figure, axes = new_figure(1, 2, height=3.2)
    for axis, (factor, default) in zip(axes[0], FACTORS):
        for report_run, network, arrays in data:
            for depth, layer in enumerate(layers):
                deviation = probe_array(arrays, PROBE, f"{{layer}}.{factor}_dev", layer)
                if deviation is None or _frozen(report_run, network, layer, factor):
                    continue
                axis.plot(arrays["step"], finite(deviation), color=network_color(network),
                          linestyle=run_linestyle(report_run.index), linewidth=0.8 + 0.5 * depth,
                          label=series_label(report_run.label, network, several_runs=runset.several))
        axis.set_title(f"mean |{factor} - {default:g}| per layer")
        axis.set_xlabel("step")
    shared_legend(figure)
    caption = (
        "How far each norm layer's affine factors moved from their defaults over training: the mean over "
        "units of |gamma - 1| (left) and |beta| (right), one line per layer (thicker = deeper: "
        + ", ".join(layers) + ") and network. 0 means the layer still applies the identity after normalizing."
    )
    return Plot("bn_parameter_deviation", "Gamma and beta over training", figure, caption,
                points=tuple(len(arrays["step"]) for _run, _network, arrays in data))


def bn_parameters_section(runset: RunSet) -> Section:
    """Histograms of gamma and beta per norm layer, and their distance from the defaults over time."""
    histograms = plot_histograms(runset)
    if histograms is None:
        return missing("bn_parameters", TITLE,
                       "No bn_parameters probe data in these runs (add 'bn_parameters' to the probes; networks "
                       "without gamma or beta, such as none and no_affine, have none).")
    section = Section("bn_parameters", TITLE, items=[histograms])
    section.add(plot_deviation(runset))
    return section
