"""The S18/B18 sections: ICS, landscape family and divergence, from the probes' documented arrays."""

from __future__ import annotations

import numpy as np
import pytest
import report_synthetic as synthetic

from normlab.report import write_report
from normlab.report.figures.santurkar import band, plot_divergence, plot_ics, plot_landscape, probe_series
from normlab.report.runs import collect_runs
from normlab.report.style import report_style
from normlab.store import load_run


@pytest.fixture(scope="module")
def santurkar_run(tmp_path_factory):
    return synthetic.make_run(tmp_path_factory.mktemp("santurkar") / "run", steps=30, probe_every=5,
                              probes=("ics", "landscape", "divergence"))


def test_every_santurkar_section_is_in_the_report(santurkar_run, tmp_path):
    html = write_report([santurkar_run], out=tmp_path).read_text(encoding="utf-8")
    for name in ("ics", "landscape", "predictiveness", "beta_smoothness", "divergence"):
        assert f'src="figures/{name}.png"' in html, name
    for title in ("Internal covariate shift (S18 Fig. 3)", "Loss landscape, gradient predictiveness",
                  "Divergence at the first steps (B18)"):
        assert f"<h2>{title}" in html
    assert "Step sizes: 4 values from 0.5 to 4 x learning rate" in html
    left_out = html.split('id="left-out"')[1]
    assert "Activation distributions" in left_out  # this run has no activations probe


def test_ics_figure_skips_the_first_layer_and_uses_log_l2(santurkar_run):
    with report_style():
        figure = plot_ics(collect_runs([santurkar_run])).figure
    titles = [axis.get_title() for axis in figure.axes]
    assert not any(title.startswith(f"{synthetic.WEIGHT_LAYERS[0]}:") for title in titles)
    assert f"{synthetic.WEIGHT_LAYERS[1]}: ||G - G'||_2" in titles
    assert figure.axes[0].get_yscale() == "log" and figure.axes[2].get_yscale() == "linear"
    stored = load_run(santurkar_run).probe("ics", "batch")
    line = next(drawn for drawn in figure.axes[2].get_lines() if drawn.get_label() == "batch (BN)")
    np.testing.assert_allclose(line.get_ydata(), stored["cosine"][:, 1], rtol=1e-6)


def test_landscape_band_is_the_stored_min_and_max(santurkar_run):
    series = {s.network: s for s in probe_series(collect_runs([santurkar_run]), "landscape")}
    stored = load_run(santurkar_run).probe("landscape", "none")
    low, high = band(series["none"])
    np.testing.assert_allclose(low, stored["loss"].min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(high, stored["loss"].max(axis=1), rtol=1e-6)
    with report_style():
        assert plot_landscape(collect_runs([santurkar_run])).figure.axes[0].get_yscale() == "log"


def test_divergence_plots_ratio_against_absolute_step_sizes(santurkar_run):
    with report_style():
        figure = plot_divergence(collect_runs([santurkar_run])).figure
    axis = figure.axes[0]
    assert axis.get_xscale() == "log" and axis.get_yscale() == "log"
    stored = load_run(santurkar_run).probe("divergence", "none")
    first = next(drawn for drawn in axis.get_lines() if drawn.get_label() == "step 0")
    np.testing.assert_allclose(first.get_xdata(), stored["etas"][0], rtol=1e-6)
    np.testing.assert_allclose(first.get_ydata(), stored["ratio"][0], rtol=1e-6)


def test_per_layer_vectors_are_exported_to_tensorboard_per_layer(santurkar_run, tmp_path):
    accumulator_module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from normlab.report.tensorboard import export_tensorboard

    out = export_tensorboard(santurkar_run, tmp_path)
    accumulator = accumulator_module.EventAccumulator(str(out / "batch"), size_guidance={"scalars": 0}).Reload()
    stored = load_run(santurkar_run).probe("ics", "batch")
    events = accumulator.Scalars(f"ics/l2/{synthetic.WEIGHT_LAYERS[2]}")
    np.testing.assert_allclose([e.value for e in events], stored["l2"][:, 2], rtol=1e-6)
    assert "landscape/spread" in accumulator.Tags()["scalars"]
