"""Distance of the weights from their initialization (S18 Lemma 4.5, seed notebook Part 2)."""

from __future__ import annotations

import numpy as np

from normlab.report.runs import RunSet, finite, network_series, probe_array, probe_layers, union_in_order
from normlab.report.sections import Plot, Section, missing
from normlab.report.style import network_color, new_figure, run_linestyle, run_marker, series_label, shared_legend

PROBE = "distance"
TITLE = "Distance from initialization"


def _distance(arrays, layer: str):
    """The (T,) distances of ``layer`` (the probe's ``{layer}`` output), or None."""
    return probe_array(arrays, PROBE, "{layer}", layer)


def _layers(report_run, network, arrays) -> list[str]:
    """The per-layer keys of the distance probe (its meta lists them; ``total`` is not a layer)."""
    listed = [layer for layer in probe_layers(report_run, PROBE, network, arrays)
              if _distance(arrays, layer) is not None]
    if listed:
        return [layer for layer in listed if layer != "total"]
    return [key for key in arrays if key not in ("step", "total") and _distance(arrays, key) is not None]


def plot_distance(runset: RunSet) -> Plot | None:
    """Left: every layer's distance at the last measurement against depth; right: the total over steps."""
    data = list(network_series(runset.runs, PROBE))
    if not data:
        return None
    figure, axes = new_figure(1, 2, height=3.4)
    by_layer, over_time = axes[0]
    every_layer = union_in_order(_layers(r, n, a) for r, n, a in data)
    for report_run, network, arrays in data:
        label = series_label(report_run.label, network, several_runs=runset.several)
        style = {"color": network_color(network), "linestyle": run_linestyle(report_run.index)}
        layers = _layers(report_run, network, arrays)
        positions = [every_layer.index(layer) for layer in layers]
        final = [float(_distance(arrays, layer)[-1]) for layer in layers]
        by_layer.plot(positions, final, marker=run_marker(report_run.index), label=label, **style)
        total = probe_array(arrays, PROBE, "total")
        if total is None:
            total = np.sqrt(sum(np.square(_distance(arrays, layer).astype(float)) for layer in layers))
        over_time.plot(arrays["step"], finite(total), label=label, linewidth=1.4, **style)
    crowded = len(every_layer) > 6  # VGG's 13 layer names need slanting to stay readable
    by_layer.set_xticks(range(len(every_layer)), every_layer, rotation=45 if crowded else 0,
                        ha="right" if crowded else "center")
    by_layer.set_title("||W - W_0||_2 per layer, last measurement")
    by_layer.set_xlabel("weight layer")
    by_layer.set_ylabel("L2 distance")
    over_time.set_title("all kernels together, over training")
    over_time.set_xlabel("step")
    shared_legend(figure)
    caption = (
        "How far training moved the weights from their (shared) initialization: the L2 norm of "
        "W_t - W_0 of each weight layer's kernel at the last measurement, against depth (left, as in "
        "the seed notebook Part 2 'L2 differences b/w init and learned params'), and of all kernels "
        "together over training (right). S18 Lemma 4.5 shows that BN places a good solution closer to "
        "the initialization; the seed notebook finds the BN network's distances consistently smaller. "
        "Lower means the network found its solution nearer to where it started."
    )
    return Plot("distance_from_init", "Distance from initialization", figure, caption,
                points=tuple(len(arrays["step"]) for _run, _network, arrays in data))


def distance_section(runset: RunSet) -> Section:
    """Distance of the weights from their initialization."""
    plot = plot_distance(runset)
    if plot is None:
        return missing("distance", TITLE, "No distance probe data in these runs (add 'distance' to the probes).")
    return Section("distance", TITLE, items=[plot])
