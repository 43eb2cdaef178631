"""Figure functions against their data: the numbers drawn are the numbers stored."""

from __future__ import annotations

import numpy as np
import pytest
import report_synthetic as synthetic

from normlab.report.figures.drift import ROWS, drift_values, plot_moment_drift
from normlab.report.figures.gradients import gradient_series, magnitude_histogram, plot_gradient_histograms
from normlab.report.figures.santurkar import plot_ics, plot_landscape
from normlab.report.figures.training import smooth
from normlab.report.runs import collect_runs, declared_output, probe_array
from normlab.report.series import Series, activation_series, histogram_density
from normlab.report.style import report_style
from normlab.store import load_run


def test_drift_rows_follow_s18_fig8():
    steps = np.array([0, 10, 20, 30])
    mean = np.array([0.0, 0.5, 0.25, 1.0])
    titles = [row[0] for row in ROWS]
    assert titles == ["|mu(t+1) - mu(t)|", "|var(t+1) - var(t)|", "mu(t) - mu(0)", "var(t) - var(0)"]
    x, step_change = drift_values(mean, steps, 0)
    np.testing.assert_array_equal(x, [10, 20, 30])
    np.testing.assert_allclose(step_change, [0.5, 0.25, 0.75])
    x, since_start = drift_values(mean, steps, 2)
    np.testing.assert_array_equal(x, steps)
    np.testing.assert_allclose(since_start, mean)


def test_drift_figure_plots_the_stored_layer_moments(pair_run):
    with report_style():
        figure = plot_moment_drift(collect_runs([pair_run])).figure
    stored = load_run(pair_run).probe("activations", "batch")
    variance = stored[f"{synthetic.LAYERS[0]}.var"]
    axis = figure.axes[3 * len(synthetic.LAYERS)]  # row var(t) - var(0), first layer
    line = next(drawn for drawn in axis.get_lines() if drawn.get_label() == "batch (BN)")
    np.testing.assert_allclose(line.get_ydata(), variance - variance[0], rtol=1e-6)


def test_histogram_density_integrates_to_the_share_inside_the_range(pair_run):
    series = next(s for s in activation_series(collect_runs([pair_run])) if s.network == "none")
    stored = load_run(pair_run).probe("activations", "none")
    layer = synthetic.LAYERS[-1]
    for index in range(len(series.steps)):
        edges, density = histogram_density(series, layer, index)
        counts, outside = stored[f"{layer}.hist"][index], stored[f"{layer}.outside"][index]
        assert np.sum(density * np.diff(edges)) == pytest.approx(counts.sum() / (counts.sum() + outside))


def test_gradient_magnitudes_fold_the_signed_bins(pair_run):
    series = gradient_series(collect_runs([pair_run]))[0]
    counts = load_run(pair_run).probe("gradients", series.network)[f"{synthetic.WEIGHT_LAYERS[0]}.hist"][0]
    edges, fraction = magnitude_histogram(series, synthetic.WEIGHT_LAYERS[0], 0)
    assert len(fraction) == len(counts) // 2 and len(edges) == len(fraction) + 1
    assert fraction.sum() == pytest.approx(1.0)
    assert fraction[-1] * counts.sum() == pytest.approx(counts[0] + counts[-1])  # the largest |g| bin
    assert np.all(np.diff(edges) > 0) and edges[0] > 0  # log axes need positive, increasing edges
    with report_style():
        plot = plot_gradient_histograms(collect_runs([pair_run]))
    assert plot.figure.axes[0].get_xscale() == "log" and plot.figure.axes[0].get_yscale() == "log"


def test_smoothing_keeps_length_and_ignores_nan():
    values = np.concatenate([np.ones(100), [np.nan], 3 * np.ones(99)])
    smoothed = smooth(values, points=50)
    assert smoothed.shape == values.shape
    assert np.isfinite(smoothed).all()
    assert smoothed[10] == pytest.approx(1.0) and smoothed[-10] == pytest.approx(3.0)


def test_santurkar_figures_need_their_probes(pair_run):
    """No ics/landscape data: the figure functions return None and the report notes it."""
    runset = collect_runs([pair_run])
    assert plot_ics(runset) is None and plot_landscape(runset) is None


def hand_series(counts, edges, outside=None) -> Series:
    """A Series holding one measurement of layer "h" with the given counts (run unused)."""
    arrays = {"step": np.array([0]), "h.hist": np.array([counts])}
    if outside is not None:
        arrays["h.outside"] = np.array([outside])
    return Series(run=None, network="n", arrays=arrays, layers=["h"], meta={"edges": list(edges)}, probe="activations")


def test_figures_read_arrays_by_the_probes_declarations():
    assert declared_output("activations", "{layer}.hist").shape == ("bins",)
    with pytest.raises(KeyError, match="declares no output 'h.hist'"):
        declared_output("activations", "h.hist")  # a stored name, not the declared pattern
    with pytest.raises(KeyError, match="'gradients' declares no output '{layer}.outside'"):
        declared_output("gradients", "{layer}.outside")
    counts = np.ones((3, 4))
    np.testing.assert_array_equal(probe_array({"h.hist": counts}, "activations", "{layer}.hist", "h"), counts)
    np.testing.assert_array_equal(probe_array({"h__hist": counts}, "activations", "{layer}.hist", "h"), counts)
    np.testing.assert_array_equal(
        probe_array({"tracked__percentiles": counts}, "activations", "tracked.percentiles"), counts)
    # a stored array of another rank than (T, *declared shape) is data no figure can use
    assert probe_array({"h.hist": np.ones(3)}, "activations", "{layer}.hist", "h") is None
    assert probe_array({"h.mean": counts}, "activations", "{layer}.mean", "h") is None
    assert probe_array({}, "activations", "{layer}.mean", "h") is None


def test_histogram_density_against_hand_built_counts():
    # edges -2 -1 0 1 2 (unit bins except the 0.5-wide ones at the ends), 10 values inside, 2 beyond
    edges = [-2.0, -1.5, 0.0, 1.0, 2.0]
    edges_out, density = histogram_density(hand_series([1, 3, 4, 2], edges, outside=2), "h", 0)
    np.testing.assert_array_equal(edges_out, edges)
    np.testing.assert_allclose(density, [1 / (12 * 0.5), 3 / (12 * 1.5), 4 / (12 * 1.0), 2 / (12 * 1.0)])
    # without an outside count every value is inside: the density integrates to 1
    _, density = histogram_density(hand_series([1, 3, 4, 2], edges), "h", 0)
    np.testing.assert_allclose(density, [1 / 5, 3 / 15, 4 / 10, 2 / 10])
    assert histogram_density(hand_series([0, 0, 0, 0], edges, outside=0), "h", 0) is None


def test_gradient_magnitude_fold_against_hand_built_counts():
    # signed edges -100 -10 -1 0 1 10 100: bins [-100,-10) [-10,-1) [-1,0) [0,1) [1,10) [10,100]
    edges = [-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0]
    counts = [1, 2, 3, 4, 5, 6]
    magnitude_edges, fraction = magnitude_histogram(hand_series(counts, edges), "h", 0)
    # |g| bins: [0, 1) from 3 + 4, [1, 10) from 2 + 5, [10, 100] from 1 + 6; the bin at 0 drawn from 1/10
    np.testing.assert_array_equal(magnitude_edges, [0.1, 1.0, 10.0, 100.0])
    np.testing.assert_allclose(fraction, [7 / 21, 7 / 21, 7 / 21])
    counts = [0, 1, 0, 9, 0, 5]
    _, fraction = magnitude_histogram(hand_series(counts, edges), "h", 0)
    np.testing.assert_allclose(fraction, [9 / 15, 1 / 15, 5 / 15])
    assert magnitude_histogram(hand_series(counts, [-1.0, 0.5, 1.0]), "h", 0) is None  # not symmetric


def test_bn_parameter_histograms_show_each_layer_against_its_default(tmp_path):
    import report_synthetic as synthetic

    from normlab.report.figures.bn_parameters import bn_parameters_section
    from normlab.report.runs import collect_runs
    from normlab.report.style import report_style

    run = synthetic.make_run(tmp_path / "run", steps=20, probes=("bn_parameters",))
    with report_style():
        section = bn_parameters_section(collect_runs([run]))
    histograms, deviation = section.items
    axes = histograms.figure.axes
    layers = list(synthetic.LAYERS)
    assert [axis.get_title() for axis in axes[: 2 * len(layers)]] == (
        [f"{layer}: gamma" for layer in layers] + [f"{layer}: beta" for layer in layers])
    # every panel: the default as a vertical line at 1 (gamma) or 0 (beta), and BN's histogram only
    for index, axis in enumerate(axes[: 2 * len(layers)]):
        default = 1.0 if index < len(layers) else 0.0
        assert [line.get_xdata()[0] for line in axis.get_lines()] == [default]
        patches = [p for p in axis.patches if p.get_label().startswith("batch")]
        assert len(patches) == 1 and not any(p.get_label().startswith("none") for p in axis.patches)
    assert "last measurement (step 10)" in histograms.caption  # steps 0 and 10 of 20
    stored = load_run(run).probe("bn_parameters", "batch")
    left, right = deviation.figure.axes[:2]
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), stored[f"{layers[0]}.gamma_dev"])
    assert left.get_title() == "mean |gamma - 1| per layer" and right.get_title() == "mean |beta - 0| per layer"
