"""Sweep curves: the swept setting is found in the sub-runs' configs; seeds are replicates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from normlab.report import write_report
from normlab.report.figures.sweep import choose_x_key, plot_sweep, sweep_curves
from normlab.report.runs import collect_runs
from normlab.report.style import report_style
from normlab.store import load_run


def test_sweep_directory_is_found_and_its_runs_labelled_by_setting(sweep_dir, pair_run):
    runset = collect_runs([sweep_dir])
    assert len(runset.sweeps) == 1 and len(runset.runs) == 6
    assert runset.runs[0].label == "lr=0.001, seed=0"  # data_seed = seed: named once
    assert collect_runs([sweep_dir, pair_run]).runs[0].label == "lr_sweep/lr=0.001, seed=0"


def test_x_axis_is_the_swept_setting_and_seeds_are_averaged(sweep_dir):
    sweep = collect_runs([sweep_dir]).sweeps[0]
    curves = sweep_curves(sweep)
    assert curves.x_key == "lr" and curves.group_keys == [] and curves.metric == "test_accuracy"
    batch = curves.points[("", "batch")]
    assert sorted(batch) == [0.001, 0.01, 0.1]
    finals = []
    for run in sweep.runs:
        if run.run.config["lr"] == 0.01:
            metrics = run.run.metrics
            finals.append(metrics[(metrics.network == "batch")].test_accuracy.dropna().iloc[-1])
    assert batch[0.01].n == 2 and batch[0.01].diverged == 0
    assert batch[0.01].mean == pytest.approx(np.mean(finals))
    assert batch[0.01].std == pytest.approx(np.std(finals, ddof=1))
    baseline = curves.points[("", "none")][0.1]
    assert baseline.diverged == 2 and baseline.values == [] and baseline.n == 2


def test_choose_x_key_prefers_numeric_with_most_values_and_groups_the_rest():
    configs = [{"lr": lr, "optimizer": opt, "seed": seed} for lr in (0.1, 0.01, 0.001) for opt in ("sgd", "adam")
               for seed in (0, 1)]
    assert choose_x_key(configs) == ("lr", ["optimizer"])
    assert choose_x_key([{"lr": 0.1, "seed": 0}, {"lr": 0.1, "seed": 1}]) == (None, [])


def test_sweep_figure_uses_log_x_for_learning_rates(sweep_dir):
    with report_style():
        plot = plot_sweep([sweep_curves(collect_runs([sweep_dir]).sweeps[0])])
    axis = plot.figure.axes[0]
    assert axis.get_xscale() == "log"
    assert "n=2" in [text.get_text() for text in axis.texts]
    assert "diverged in every replicate" in axis.get_legend_handles_labels()[1]
    assert "diverged in every replicate" in plot.caption


def test_two_sweeps_are_overlaid_in_one_figure(sweep_dir, tmp_path):
    copy = tmp_path / "lr_sweep_copy"
    shutil.copytree(sweep_dir, copy)
    runset = collect_runs([sweep_dir, copy])
    from normlab.report.figures.sweep import sweep_section

    with report_style():
        section = sweep_section(runset)
    plots = [item for item in section.items if hasattr(item, "figure") and item.name == "sweep_lr"]
    assert len(plots) == 1
    labels = plots[0].figure.axes[0].get_legend_handles_labels()[1]
    assert any("(lr_sweep_copy)" in label for label in labels) and any("(lr_sweep)" in label for label in labels)


def test_sweep_report_has_the_curve_and_the_table(sweep_dir, tmp_path):
    html = write_report([sweep_dir], out=tmp_path, video=False).read_text(encoding="utf-8")
    assert 'src="figures/sweep_lr.png"' in html
    assert "<h3>Sweep points</h3>" in html
    assert html.count("Run directory:") == 6
    # Figures other than the sweep curves overlay a readable subset: one seed, spread over lr.
    assert "The figures of this section show 3 of the 6 runs" in html
    run = load_run(next(p for p in sorted(sweep_dir.iterdir())))
    assert run.config["lr"] == 0.001
