"""The Santurkar et al. (S18) measurements: gradient ICS (Fig. 3), loss landscape, gradient
predictiveness and effective beta-smoothness (Fig. 4), and B18's divergence probe.

Every figure reads the probe's arrays by the keys the probe declares (``outputs``, read through
``Series.array``) and is left out when the probe has no data, so these sections appear exactly for
the runs that measured them.
"""

from __future__ import annotations

import numpy as np

from normlab.report.runs import RunSet, finite, union_in_order
from normlab.report.sections import Plot, Section, missing, points_of, section_of
from normlab.report.series import Series, layers_note, probe_series, select_layers
from normlab.report.style import network_color, new_figure, run_hatch, shared_legend

ICS_TITLE = "Internal covariate shift (S18 Fig. 3)"
LANDSCAPE_TITLE = "Loss landscape, gradient predictiveness, beta-smoothness (S18 Fig. 4)"
DIVERGENCE_TITLE = "Divergence at the first steps (B18)"
MAX_ICS_LAYERS = 5


# ------------------------------------------------------------------------------------- ICS


def ics_layers(series: list[Series]) -> tuple[list[str], list[str]]:
    """Layers to draw: never the first (G' = G there by definition), at most ``MAX_ICS_LAYERS``."""
    every_layer = union_in_order(s.layers for s in series)
    candidates = every_layer[1:] or every_layer
    return select_layers(candidates, MAX_ICS_LAYERS), every_layer


def _ics_column(series: Series, layer: str, key: str):
    """Column ``layer`` of the (steps, layers) array ``key``, or None."""
    values = series.array(key)
    if values is None or layer not in series.layers:
        return None
    column = series.layers.index(layer)
    return finite(np.asarray(values)[:, column]) if column < np.shape(values)[1] else None


def _relative_l2(series: Series, layer: str):
    l2, norm = _ics_column(series, layer, "l2"), _ics_column(series, layer, "grad_norm")
    if l2 is None or norm is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norm > 0, l2 / norm, np.nan)


def plot_ics(runset: RunSet) -> Plot | None:
    """Per layer: ||G - G'|| (log), ||G - G'|| / ||G|| (log) and cos(G, G') over steps."""
    series = [s for s in probe_series(runset, "ics") if s.array("l2") is not None]
    if not series:
        return None
    layers, every_layer = ics_layers(series)
    columns = [("||G - G'||_2", lambda s, layer: _ics_column(s, layer, "l2"), "log"),
               ("||G - G'||_2 / ||G||_2", _relative_l2, "log"),
               ("cos(G, G')", lambda s, layer: _ics_column(s, layer, "cosine"), "linear")]
    figure, axes = new_figure(len(layers), len(columns), height=2.1, sharex=True)
    for row, layer in enumerate(layers):
        for column, (name, values_of, scale) in enumerate(columns):
            axis = axes[row, column]
            for s in series:
                values = values_of(s, layer)
                if values is None:
                    continue
                if scale == "log":
                    values = np.where(values > 0, values, np.nan)
                axis.plot(s.steps, values, linewidth=1.1, alpha=0.9, label=s.label(runset.several), **s.style())
            axis.set_title(f"{layer}: {name}", fontsize=9)
            axis.set_yscale(scale)
            if row == len(layers) - 1:
                axis.set_xlabel("step")
    shared_legend(figure)
    mode = "/".join(sorted({str(s.meta.get("bn_mode", "train")) for s in series}))
    caption = (
        "Santurkar et al.'s gradient-based internal covariate shift (S18 Def. 2.1, Fig. 3; the seed "
        "notebook Part 2 plots the same). For weight layer i at step t, G is the gradient of the loss "
        "with respect to W_i, and G' the same gradient after the earlier layers took their real "
        f"optimizer step, on the same batch (BN in {mode} mode). Left: ||G - G'|| (log scale); middle: the "
        "same relative to ||G||, which makes networks with different gradient scales comparable; right: "
        "the cosine between G and G'. No shift is 0 on the left two and 1 on the right: lower l2 and "
        "higher cosine are better. S18 finds BN does not reduce this shift (for VGG it is similar or "
        "larger; in the deep linear network G and G' become almost uncorrelated with BN), so BN's "
        "benefit cannot come from reducing it. The first layer is not drawn: nothing precedes it, so "
        "G' = G there by definition." + layers_note(layers, every_layer[1:] or every_layer)
    )
    return Plot("ics", "Gradient ICS per layer", figure, caption, points=points_of(series))


def ics_section(runset: RunSet) -> Section:
    """S18 Fig. 3 gradient ICS per layer."""
    plot = plot_ics(runset)
    if plot is None:
        return missing("ics", ICS_TITLE, "No ics probe data in these runs (add 'ics' to the probes; the "
                       "santurkar_vgg and santurkar_dln presets measure it).")
    return Section("ics", ICS_TITLE, items=[plot])


# ------------------------------------------------------------------------- landscape family


# The (steps, step sizes) output whose min-max over step sizes is the band of each band probe.
BAND_OUTPUTS = {"landscape": "loss", "predictiveness": "distance"}


def band(series: Series):
    """(min, max) over step sizes at every measurement: the probe's ``min``/``max`` if stored, else
    from its (steps, step sizes) array (``BAND_OUTPUTS``)."""
    low, high = series.array("min"), series.array("max")
    if low is not None and high is not None:
        return finite(low), finite(high)
    values = series.array(BAND_OUTPUTS[series.probe])
    if values is None:
        return None
    with np.errstate(all="ignore"):
        return np.nanmin(finite(values), axis=1), np.nanmax(finite(values), axis=1)


def draw_band(axis, series: Series, low, high, several: bool) -> None:
    """A min-max band in the network's color; overlaid runs differ by hatch and edge style."""
    style = series.style()
    color = network_color(series.network)
    axis.fill_between(series.steps, low, high, color=color, alpha=0.35, hatch=run_hatch(series.run.index),
                      linewidth=0, label=series.label(several))
    axis.plot(series.steps, low, color=color, linestyle=style["linestyle"], linewidth=0.8)
    axis.plot(series.steps, high, color=color, linestyle=style["linestyle"], linewidth=0.8)


def plot_band_probe(runset: RunSet, probe: str, *, title: str, ylabel: str, caption: str, name: str) -> Plot | None:
    """The min-max band over step sizes of ``probe`` at every measured step, log scale."""
    series = [s for s in probe_series(runset, probe) if band(s) is not None]
    if not series:
        return None
    figure, axes = new_figure(1, 1, height=3.4, width=8.5)
    axis = axes[0, 0]
    for s in series:
        low, high = band(s)
        draw_band(axis, s, np.where(low > 0, low, np.nan), np.where(high > 0, high, np.nan), runset.several)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    shared_legend(figure)
    return Plot(name, title, figure, caption + _step_sizes_text(series), points=points_of(series))


def _step_sizes_text(series: list[Series]) -> str:
    """The step sizes from the probe's meta, e.g. "8 step sizes from 0.5 to 4 x learning rate"."""
    meta = series[0].meta
    sizes = meta.get("step_sizes")
    if not sizes:
        return ""
    unit = meta.get("step_size_unit", "")
    return (f" Step sizes: {len(sizes)} values from {min(sizes):g} to {max(sizes):g} {unit} "
            f"({meta.get('spacing', 'linear')} spacing).")


def plot_landscape(runset: RunSet) -> Plot | None:
    """S18 Fig. 4a: the range of L(theta - eta g) over the step sizes."""
    return plot_band_probe(
        runset, "landscape", title="Loss landscape (variation of the loss along the gradient)",
        ylabel="loss L(theta - eta g)", name="landscape",
        caption=(
            "At each measured step, the loss after moving from the current weights along the gradient "
            "by a range of step sizes eta, L(theta - eta g); the band spans the smallest to the largest "
            "of these losses (log scale). A narrow band means the loss changes little along the gradient "
            "direction (a smoother, more Lipschitz loss), so larger steps are safe. S18 Fig. 4(a) and the "
            "seed notebook Part 2 find the BN network's band much narrower: narrower is better."
        ),
    )


def plot_predictiveness(runset: RunSet) -> Plot | None:
    """S18 Fig. 4b: the range of ||g(theta) - g(theta - eta g)|| over the step sizes."""
    return plot_band_probe(
        runset, "predictiveness", title="Gradient predictiveness",
        ylabel="||g(theta) - g(theta - eta g)||_2", name="predictiveness",
        caption=(
            "At each measured step, the L2 distance between the gradient at the current weights and the "
            "gradient after a step of size eta along it, over a range of eta; the band spans the smallest "
            "to the largest (log scale). A small change means the gradient direction stays predictive "
            "over the step the optimizer takes. S18 Fig. 4(b) finds it about two orders of magnitude "
            "lower with BN early in training: lower is better."
        ),
    )


def plot_beta_smoothness(runset: RunSet) -> Plot | None:
    """Effective beta-smoothness over steps (one value per measurement), log scale."""
    series = [s for s in probe_series(runset, "beta_smoothness") if _beta(s) is not None]
    if not series:
        return None
    figure, axes = new_figure(1, 1, height=3.2, width=8.5)
    axis = axes[0, 0]
    for s in series:
        values = _beta(s)
        axis.plot(
            s.steps, np.where(values > 0, values, np.nan), linewidth=1.3, label=s.label(runset.several), **s.style()
        )
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("max ||dg|| / ||eta g||")
    shared_legend(figure)
    caption = (
        "Effective beta-smoothness: the largest ratio, over the step sizes eta, of how much the gradient "
        "changes to how far the weights moved, max_eta ||g(theta) - g(theta - eta g)|| / ||eta g|| (log "
        "scale). It estimates the local Lipschitz constant of the gradient along the optimization path; "
        "S18 Fig. 4(c) finds it clearly lower with BN. Lower is smoother and better." + _step_sizes_text(series)
    )
    return Plot("beta_smoothness", "Effective beta-smoothness", figure, caption, points=points_of(series))


def _beta(series: Series):
    values = series.array("beta")
    return finite(values) if values is not None else None


def landscape_section(runset: RunSet) -> Section:
    """S18 Fig. 4: loss landscape band, gradient predictiveness band, effective beta-smoothness."""
    return section_of(
        "landscape", LANDSCAPE_TITLE,
        (plot_landscape(runset), plot_predictiveness(runset), plot_beta_smoothness(runset)),
        intro="Measured at the probe steps by moving the weights along the training gradient and looking at "
              "the loss and gradient there; nothing is trained by these measurements.",
        missing_note="No landscape, predictiveness or beta_smoothness probe data in these runs (the "
                     "santurkar_vgg and santurkar_dln presets measure them).")


# ------------------------------------------------------------------------------ divergence


MAX_DIVERGENCE_STEPS = 5  # B18 looks at the first few mini-batches


def plot_divergence(runset: RunSet) -> Plot | None:
    """B18: relative loss L(theta - eta g) / L(theta) against eta (log-log), one panel per network."""
    series = [s for s in probe_series(runset, "divergence") if _relative_losses(s) is not None]
    if not series:
        return None
    networks = union_in_order([[s.network] for s in series])
    figure, axes = new_figure(1, len(networks), height=3.4, sharex=True, sharey=True)
    for axis, network in zip(axes[0], networks):
        for s in (s for s in series if s.network == network):
            etas, relative = _relative_losses(s)
            steps = s.steps[:MAX_DIVERGENCE_STEPS]
            shades = np.linspace(1.0, 0.35, len(steps))
            for row, (step, shade) in enumerate(zip(steps, shades)):
                axis.plot(etas, np.where(relative[row] > 0, relative[row], np.nan), color=network_color(network),
                          alpha=float(shade), linestyle=s.style()["linestyle"], linewidth=1.2,
                          label=f"{s.run.label}, step {int(step)}" if runset.several else f"step {int(step)}")
        axis.axhline(1.0, color="black", linewidth=0.7)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(network)
        axis.set_xlabel("step size eta")
        axis.legend(fontsize=6.5)
    axes[0, 0].set_ylabel("L(theta - eta g) / L(theta)")
    caption = (
        "B18's divergence test: at the first few mini-batches, the loss after a gradient step of size "
        "eta relative to the loss before it, over a logarithmic grid of eta (both axes log). Below the "
        "black line at 1 the step decreases the loss; where a curve shoots up, steps that large make "
        "the network diverge. B18 finds that without BN the loss explodes already at much smaller "
        "learning rates; BN's curve stays below 1 to larger eta, which is what permits its larger "
        f"learning rates. One line per measured step (the first {MAX_DIVERGENCE_STEPS} at most); darker "
        "lines are earlier steps."
    )
    return Plot("divergence", "Relative loss after one step (B18)", figure, caption)


def _relative_losses(series: Series):
    """(etas, relative losses (steps, etas)) from the divergence probe, or None."""
    relative, etas = series.array("ratio"), series.array("etas")
    if relative is None or etas is None:
        return None
    # The divergence probe's step sizes are absolute (not x lr), so every row holds the same grid.
    return np.asarray(etas, dtype=float)[0], finite(relative)


def divergence_section(runset: RunSet) -> Section:
    """B18 relative loss after one step against the step size."""
    plot = plot_divergence(runset)
    if plot is None:
        return missing("divergence", DIVERGENCE_TITLE, "No divergence probe data in these runs (add 'divergence' "
                       "to the probes).")
    return Section("divergence", DIVERGENCE_TITLE, items=[plot])
