"""A study's figures and tables over an lr sweep with seeds, against numbers chosen by hand: the
largest lr that trains, the paired differences with their t-intervals, the per-epoch panels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.report import write_report
from normlab.report.figures.study import paired_table, plot_accuracy_per_epoch, trains_table
from normlab.report.figures.sweep import sweep_curves
from normlab.report.runs import collect_runs
from normlab.report.style import report_style
from normlab.store import RunStore

NAN = math.nan
# final test accuracy per lr, network and seed (NaN: the run diverged); digits has 10 classes, so
# "trains" means > 20% in a majority of seeds
FINALS = {
    0.1: {"none": [0.80, 0.82, 0.78], "batch": [0.85, 0.86, 0.84]},
    1.0: {"none": [0.50, 0.15, 0.30], "batch": [0.84, 0.83, 0.85]},
    4.0: {"none": [NAN, NAN, NAN], "batch": [0.70, NAN, 0.65]},
}
COLUMNS = ["loss", "accuracy", "lr", "test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """3 lrs x 3 seeds of a none/batch pair, 2 epochs of 10 steps, evaluated after each epoch
    (at epoch 1 every accuracy is half its final value)."""
    root = tmp_path_factory.mktemp("study")
    for lr, per_network in FINALS.items():
        for seed in range(3):
            config = {"preset": "d2l_lr", "dataset": "digits", "model": "lenet", "networks": ["none", "batch"],
                      "lr": lr, "seed": seed, "data_seed": seed, "epochs": 2, "steps": 0, "probes": []}
            store = RunStore.create(root / f"lr={lr}-seed={seed}", config=config, provenance={},
                                    metric_columns=COLUMNS)
            diverged = {}
            for network in ("none", "batch"):
                final = per_network[network][seed]
                if math.isnan(final):
                    diverged[network] = 15
                    store.append_metrics([{"step": 10, "network": network, "kind": "eval", "test_loss": 2.0,
                                           "test_accuracy": 0.1}])
                    continue
                store.append_metrics([{"step": step, "network": network, "kind": "eval", "test_loss": 1.0,
                                       "test_accuracy": final * step / 20} for step in (10, 20)])
            store.flush()
            store.set_status("completed", diverged=diverged, total_steps=20, steps_done=20)
    return root


@pytest.fixture(scope="module")
def curves(study_dir):
    return sweep_curves(collect_runs([study_dir]).sweeps[0])


def test_the_largest_learning_rate_that_trains(curves):
    table = trains_table(curves)
    rows = {row[1]: row for row in table.rows}
    assert rows["none"][2:5] == ["0.1, 1", "1", "0.1"]  # 1: two of three seeds above 20%; only 0.1 in every seed
    assert rows["batch"][2:5] == ["0.1, 1, 4", "4", "1"]  # 4: 70% and 65%, one seed diverged
    assert rows["batch"][5] == "67.50 ± 3.54 (n=2, 1 missing)"
    assert rows["none"][6] == "4 (3 of 3 diverged)" and rows["batch"][6] == "-"
    assert "above 2 x chance (20% here, chance = 10%)" in table.caption


def test_paired_differences_match_the_hand_computed_t_intervals(curves):
    rows = {(row[1], row[2]): row for row in paired_table(curves).rows}
    # lr 0.1: d = 5, 4, 6 points: mean 5, s_d = 1, t(0.975, 2) = 4.303: 5 ± 4.303 / sqrt(3) = [2.52, 7.48]
    assert rows[("0.1", "batch")][3:] == ["85.00 ± 1.00 (n=3)", "80.00 ± 2.00 (n=3)", "+5.00 [+2.52, +7.48] (n=3)",
                                         "yes"]
    # lr 1: d = 34, 68, 55: mean 52.333, s_d = sqrt(588.67 / 2) = 17.156, half width 4.303 * 17.156 / sqrt(3) = 42.62
    shown = rows[("1", "batch")][5]
    assert shown.startswith("+52.33 [") and shown.endswith("] (n=3)") and rows[("1", "batch")][6] == "yes"
    low, high = (float(v) for v in shown.split("[")[1].split("]")[0].split(", "))
    assert (low, high) == pytest.approx((52.333 - 42.62, 52.333 + 42.62), abs=0.02)
    assert rows[("4", "batch")][5].startswith("- (no seed with both finite")
    assert rows[("4", "batch")][6] == "n < 2"


def test_accuracy_per_epoch_has_a_panel_per_network_and_says_n(curves):
    with report_style():
        plot = plot_accuracy_per_epoch(curves)
    none, batch = plot.figure.axes[:2]
    assert none.get_title() == "none (baseline)" and batch.get_title() == "batch (BN)"
    labels = none.get_legend_handles_labels()[1]
    assert labels == ["lr=0.1 (n=3)", "lr=1 (n=3)", "lr=4 (n=3, 3 diverged)"]
    line = batch.get_lines()[0]  # lr 0.1: epochs 1 and 2, mean over the seeds
    np.testing.assert_allclose(line.get_xdata(), [1, 2])
    np.testing.assert_allclose(line.get_ydata(), [0.425, 0.85])
    assert batch.get_xlabel() == "epoch" and "n = 3 per line" in plot.caption


def test_the_sweep_report_holds_the_study_figures_and_tables(study_dir, tmp_path):
    html = write_report([study_dir], out=tmp_path, video=False).read_text(encoding="utf-8")
    for name in ("sweep_lr", "per_epoch_lr"):
        assert f'src="figures/{name}.png"' in html
    for title in ("Largest lr that trains", "Paired differences from the baseline", "Sweep points"):
        assert f"<h3>{title}</h3>" in html
