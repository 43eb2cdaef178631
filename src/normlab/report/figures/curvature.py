"""The Hessian probes: spectral density over training (G19 Fig. 2-5), top eigenvalues against 2/lr
(C21 Fig. 1), trace, and the gradient's concentration in the top eigenspace (G19 Fig. 6).

Each figure reads the probe's arrays by the names its docstring gives (``normlab.probes.curvature``)
and is left out when the probe has no data.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from normlab.probes.lanczos import smoothed_density
from normlab.report.runs import RunSet, finite
from normlab.report.sections import Plot, Section, missing, points_of
from normlab.report.series import probe_series
from normlab.report.style import new_figure, shared_legend

TITLE = "Hessian curvature: spectrum, sharpness, trace, gradient concentration (G19, C21)"
DENSITY_FLOOR = 1e-7  # log-density plots need a floor: SLQ densities fall to 0 between outliers
SMOOTHING = 0.01  # Gaussian width sigma as a fraction of the spectrum's range (G19 uses small sigma)


def _mode(series) -> str:
    return "/".join(sorted({str(s.meta.get("bn_mode", "train")) for s in series}))


def few_points_note(series, what: str) -> str | None:
    """One line naming the series that have fewer than 2 measurements (a curve needs two)."""
    short = [f"{s.label(True)} ({len(s.steps)})" for s in series if len(s.steps) < 2]
    if not short or len(short) == len(series):  # all short: the report says so in place of the figure
        return None
    return f"{what}: fewer than 2 measurements for {', '.join(short)}; drawn as single points."


def plot_density(runset: RunSet) -> Plot | None:
    """One panel per (run, network): the smoothed SLQ density at every measurement, log scale."""
    series = [s for s in probe_series(runset, "hessian_density")
              if s.array("nodes") is not None and s.array("weights") is not None]
    if not series:
        return None
    figure, axes = new_figure(len(series), 1, height=2.6, squeeze=False)
    colors = colormaps["viridis"]
    for axis, s in zip(axes[:, 0], series):
        nodes, weights = np.asarray(s.array("nodes"), float), np.asarray(s.array("weights"), float)
        finite_nodes = nodes[np.isfinite(nodes)]
        if finite_nodes.size == 0:
            continue
        low, high = finite_nodes.min(), finite_nodes.max()
        span = max(high - low, 1e-12)
        grid = np.linspace(low - 0.05 * span, high + 0.05 * span, 800)
        for t, step in enumerate(s.steps):
            density = smoothed_density(nodes[t], weights[t], grid, SMOOTHING * span)
            fraction = t / max(len(s.steps) - 1, 1)
            axis.plot(grid, np.maximum(density, DENSITY_FLOOR), color=colors(fraction), linewidth=1.0,
                      label=f"step {int(step)}" if t in (0, len(s.steps) - 1) else None)
        axis.set_yscale("log")
        axis.set_title(f"{s.label(runset.several)}: Hessian eigenvalue density", fontsize=9)
        axis.set_xlabel("eigenvalue")
        axis.set_ylabel("density")
        axis.legend(fontsize=7, loc="upper right")
    caption = (
        "The Hessian's spectral density by stochastic Lanczos quadrature (G19 Sec. 2, Fig. 2-5): for each "
        "measurement (dark = early, yellow = late) the Ritz values of each Lanczos run, weighted by the "
        "squared first components of T's eigenvectors and smoothed by a Gaussian of width 1% of the panel's "
        f"eigenvalue range, averaged over the random starts; log density, floored at {DENSITY_FLOOR:g} "
        f"(BN mode {_mode(series)}). G19: without BN a few large isolated eigenvalues (outliers, about one per "
        "class) separate from the bulk near 0; with BN (batch statistics) they are much smaller or absent."
    )
    return Plot("hessian_density", "Hessian eigenvalue density over training", figure, caption,
                points=points_of(series))


def plot_top(runset: RunSet) -> Plot | None:
    """Top-k eigenvalues over steps (top bold) with 2/lr dashed (C21)."""
    series = [s for s in probe_series(runset, "hessian_top") if s.array("eigenvalues") is not None]
    if not series:
        return None
    figure, axes = new_figure(1, 1, height=3.4)
    axis = axes[0, 0]
    for s in series:
        values = finite(s.array("eigenvalues"))
        style = s.style()
        marker = "o" if len(s.steps) < 2 else None
        axis.plot(s.steps, values[:, 0], linewidth=1.8, marker=marker, label=f"{s.label(runset.several)}: top", **style)
        if values.shape[1] > 1:
            axis.plot(s.steps, values[:, 1:], linewidth=0.6, alpha=0.5, color=style["color"])
        two_over_lr = s.array("two_over_lr")
        if two_over_lr is not None:
            axis.plot(s.steps, finite(two_over_lr), linewidth=1.0, linestyle="--", color="black",
                      alpha=0.7, label="2 / lr" if s is series[0] else None)
    positive = all(np.nanmin(finite(s.array("eigenvalues"))) > 0 for s in series)
    axis.set_yscale("log" if positive else "linear")
    axis.set_xlabel("step")
    axis.set_ylabel("Hessian eigenvalue")
    shared_legend(figure)
    k = max(np.shape(finite(s.array("eigenvalues")))[1] for s in series)
    caption = (
        f"The {k} largest Hessian eigenvalues over training (the largest bold, the others thin), by Lanczos with "
        f"full reorthogonalization (BN mode {_mode(series)}); the dashed line is 2/lr. C21 Fig. 1: under full-batch "
        "GD the top eigenvalue (sharpness) rises until it reaches 2/lr and then hovers there (the edge of "
        "stability); GD on a quadratic with sharpness above 2/lr would diverge. G19: the BN network's top "
        "eigenvalues are smaller than the baseline's. Each Ritz pair's residual is stored as `residuals`."
    )
    return Plot("hessian_top", "Top Hessian eigenvalues and 2/lr", figure, caption, points=points_of(series))


def plot_trace_and_concentration(runset: RunSet) -> Plot | None:
    """Left: Hutchinson trace with a 2-stderr band; right: gradient concentration in the top-k space."""
    traces = [s for s in probe_series(runset, "hessian_trace") if s.array("trace") is not None]
    concentration = [s for s in probe_series(runset, "gradient_concentration") if s.array("fraction") is not None]
    if not traces and not concentration:
        return None
    figure, axes = new_figure(1, 2, height=3.2)
    left, right = axes[0]
    for s in traces:
        trace, error = finite(s.array("trace")), s.array("stderr")
        error = np.zeros_like(trace) if error is None else finite(error)
        left.plot(s.steps, trace, marker="o" if len(s.steps) < 2 else None, label=s.label(runset.several), **s.style())
        left.fill_between(s.steps, trace - 2 * error, trace + 2 * error, alpha=0.2, color=s.style()["color"])
    left.set_title("trace of the Hessian (Hutchinson, +-2 stderr)", fontsize=9)
    left.set_xlabel("step")
    for s in concentration:
        fraction = finite(s.array("fraction"))
        right.plot(s.steps, fraction[:, -1], marker="o" if len(s.steps) < 2 else None,
                   label=s.label(runset.several), **s.style())
    right.set_ylim(0, 1.02)
    k = max((np.shape(finite(s.array("fraction")))[1] for s in concentration), default=0)
    right.set_title(f"||P_{k} g||^2 / ||g||^2 (top-{k} Ritz vectors)", fontsize=9)
    right.set_xlabel("step")
    shared_legend(figure)
    modes = _mode(traces + concentration)
    caption = (
        "Left: the trace of the Hessian by Hutchinson's estimator with Rademacher vectors, with a band of "
        "two standard errors (the sum of all eigenvalues: large outliers and a wide bulk both raise it). "
        f"Right: the fraction of the squared gradient norm in the span of the top-{k} Hessian Ritz vectors "
        "(G19 Sec. 4, Fig. 6: without BN the gradient concentrates almost entirely in the outlier subspace; "
        f"BN reduces this). BN mode {modes}."
    )
    return Plot("hessian_trace_concentration", "Hessian trace and gradient concentration", figure, caption,
                points=points_of(traces + concentration))


def curvature_section(runset: RunSet) -> Section:
    """G19 / C21 figures from the hessian_* and gradient_concentration probes."""
    section = Section("curvature", TITLE)
    for builder in (plot_density, plot_top, plot_trace_and_concentration):
        section.add(builder(runset))
    if section.empty:
        return missing("curvature", TITLE, "No Hessian probe data in these runs (add 'curvature' or hessian_top, "
                       "hessian_trace, hessian_density, gradient_concentration to the probes; the "
                       "ghorbani_outliers and edge_of_stability presets measure them).")
    for probe in ("hessian_density", "hessian_top", "hessian_trace", "gradient_concentration"):
        note = few_points_note(probe_series(runset, probe), probe)
        if note:
            section.notes.append(note)
    return section

