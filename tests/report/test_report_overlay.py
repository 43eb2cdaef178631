"""Several runs in one report: overlaid in the same figures, named in legends, styled apart."""

from __future__ import annotations

import re

import matplotlib.colors as mcolors
from matplotlib.lines import Line2D

from normlab.report.figures.activations import plot_activation_histograms, plot_activation_moments
from normlab.report.figures.distance import plot_distance
from normlab.report.figures.gradients import plot_gradient_moments
from normlab.report.figures.training import plot_loss_curves
from normlab.report.runs import collect_runs
from normlab.report.style import NETWORK_COLORS, network_color, report_style


def _legend_texts(figure) -> list[str]:
    texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is not None:
            texts += [text.get_text() for text in legend.get_texts()]
    return texts


def _data_lines(figure) -> list[Line2D]:
    return [line for axis in figure.axes for line in axis.get_lines() if not line.get_label().startswith("_")]


def test_two_runs_share_each_figure_and_are_named_in_its_legend(pair_run, second_run):
    runset = collect_runs([pair_run, second_run])
    with report_style():
        plots = [plot_loss_curves(runset), plot_activation_moments(runset), plot_gradient_moments(runset),
                 plot_distance(runset)]
    for plot in plots:
        texts = _legend_texts(plot.figure)
        for label in ("pair: none (baseline)", "pair: batch (BN)", "other: none (baseline)", "other: batch (BN)"):
            assert any(text.startswith(label) for text in texts), (plot.name, label, texts)


def test_runs_differ_by_line_style_and_networks_by_color(pair_run, second_run):
    runset = collect_runs([pair_run, second_run])
    with report_style():
        figure = plot_loss_curves(runset).figure
    styles = {}
    for line in _data_lines(figure):
        run, network = line.get_label().split(": ")
        styles.setdefault(run, set()).add(line.get_linestyle())
        expected = NETWORK_COLORS["none" if network.startswith("none") else "batch"]
        assert mcolors.same_color(line.get_color(), expected)
    assert styles["pair"] != styles["other"]


def test_histogram_legends_give_mean_and_std_per_run(pair_run, second_run):
    """Each panel lists every line's mean ± std; one figure legend names the lines."""
    runset = collect_runs([pair_run, second_run])
    with report_style():
        figure = plot_activation_histograms(runset).figure
    names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert names == ["pair: none (baseline)", "pair: batch (BN)", "other: none (baseline)", "other: batch (BN)"]
    first_panel = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert len(first_panel) == 4 and all(re.fullmatch(r"-?\d+\.\d\d ± \d+\.\d\d.*", t) for t in first_panel)


def test_single_run_histogram_panels_name_the_network(pair_run):
    with report_style():
        figure = plot_activation_histograms(collect_runs([pair_run])).figure
    first_panel = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert first_panel[0].startswith("none: ") and first_panel[1].startswith("batch: ")


def test_overlay_report_has_both_runs_in_header_and_summary(overlay_report):
    html = overlay_report.read_text(encoding="utf-8")
    assert html.count("Run directory:") == 2
    summary = html.split('id="summary"')[1].split("</section>")[0]
    assert summary.count("<tr>") == 1 + 4  # header + 2 runs x 2 networks
    assert "line styles tell the runs apart" in html


def test_same_directory_names_get_unique_labels(tmp_path):
    import report_synthetic as synthetic

    first = synthetic.make_run(tmp_path / "a" / "run", steps=5, probes=())
    second = synthetic.make_run(tmp_path / "b" / "run", steps=5, probes=())
    labels = [r.label for r in collect_runs([first, second]).runs]
    assert labels == ["a/run", "b/run"]


def test_network_colors_are_fixed_and_unknown_names_stable():
    assert network_color("none") == NETWORK_COLORS["none"] and network_color("batch") == NETWORK_COLORS["batch"]
    assert len(set(NETWORK_COLORS.values())) == len(NETWORK_COLORS)
    assert network_color("my_norm") == network_color("my_norm")
    assert mcolors.is_color_like(network_color("my_norm"))
