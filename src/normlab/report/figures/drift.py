"""Moment drift of the activations (S18 Fig. 8), from the ``activations`` probe's layer mean and var."""

from __future__ import annotations

import numpy as np

from normlab.report.runs import RunSet, finite
from normlab.report.sections import Plot, Section, missing, points_of
from normlab.report.series import activation_series, layers_note, shown_layers
from normlab.report.style import new_figure, shared_legend

TITLE = "Moment drift (noisy BN, S18 Fig. 8)"

# (row title, statistic, transform of the series, log scale)
ROWS = (
    ("|mu(t+1) - mu(t)|", "mean", lambda v: np.abs(np.diff(v)), True),
    ("|var(t+1) - var(t)|", "var", lambda v: np.abs(np.diff(v)), True),
    ("mu(t) - mu(0)", "mean", lambda v: v - v[0], False),
    ("var(t) - var(0)", "var", lambda v: v - v[0], False),
)


def drift_values(values: np.ndarray, steps: np.ndarray, row: int):
    """(steps, values) of drift row ``row``; a change between measurements is placed at the later one."""
    transform = ROWS[row][2]
    drift = transform(finite(values))
    return (steps[1:] if len(drift) == len(steps) - 1 else steps), drift


def plot_moment_drift(runset: RunSet) -> Plot | None:
    """Per layer: step-to-step and since-start changes of the activations' mean and variance."""
    series = [s for s in activation_series(runset) if len(s.steps) >= 2]
    if not series:
        return None
    layers, every_layer = shown_layers(series)
    figure, axes = new_figure(len(ROWS), len(layers), height=2.0, sharex=True)
    drawn = False
    for row, (title, key, _transform, log) in enumerate(ROWS):
        for column, layer in enumerate(layers):
            axis = axes[row, column]
            for s in series:
                values = s.array(f"{{layer}}.{key}", layer)
                if values is None:
                    continue
                steps, drift = drift_values(values, s.steps, row)
                if log:
                    drift = np.where(drift > 0, drift, np.nan)  # log axes cannot show exact zeros
                axis.plot(steps, drift, linewidth=1.3, label=s.label(runset.several), **s.style())
                drawn = True
            axis.set_title(f"{layer}: {title}", fontsize=9)
            if log:
                axis.set_yscale("log")
            if row == len(ROWS) - 1:
                axis.set_xlabel("step")
    if not drawn:
        return None
    shared_legend(figure)
    caption = (
        "How much the distribution of each layer's pre-activations moves (S18 Fig. 8, which compares "
        "standard BN with 'noisy' BN that injects a random, time-varying shift and scale after the "
        "norm). Rows 1-2: the absolute change of the layer's mean and variance between consecutive "
        "measurements (log scale); rows 3-4: the change since the first measurement. Lower and flatter "
        "means less distributional shift ('internal covariate shift' in the BN15 sense). S18's point: "
        "noisy BN shows far more drift than BN yet trains about as well, so a stable input "
        "distribution is not what makes BN work. Changes are between probe measurements, not "
        "necessarily consecutive training steps." + layers_note(layers, every_layer)
    )
    return Plot("moment_drift", "Moment drift", figure, caption, points=points_of(series))


def drift_section(runset: RunSet) -> Section:
    """S18 Fig. 8 drift of the layer moments, with a hint when no noisy-BN network was run."""
    plot = plot_moment_drift(runset)
    if plot is None:
        return missing("drift", TITLE, "No activations probe data with at least two measurements, so no "
                       "drift can be computed (add 'activations' to the probes).")
    networks = {network for run in runset.runs for network in run.networks}
    intro = "" if "noisy" in networks else (
        "No network in these runs uses the 'noisy' norm; the figure still shows how the activations of "
        "the networks present drift. Run with --set networks=none,batch,noisy for S18's comparison."
    )
    return Section("drift", TITLE, intro=intro, items=[plot])
