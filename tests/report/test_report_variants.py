"""A study's own section on a hand-made study directory: variants and contexts read from
sweep.json, paired differences from the study's baseline, the activation magnitude and the cost
table against numbers chosen by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from normlab.report.figures.variants import (
    cost_table,
    paired_study_table,
    plot_activation_magnitude,
    plot_final_accuracy,
    variant_data,
)
from normlab.report.runs import collect_runs
from normlab.report.style import report_style
from normlab.store import RunStore

COLUMNS = ["loss", "accuracy", "lr", "test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy"]
# final test accuracy per (dropout, network) and seed
FINALS = {("0", "none"): [0.80, 0.82, 0.78], ("0", "batch"): [0.85, 0.86, 0.84],
          ("0.5", "none"): [0.70, 0.74, 0.75], ("0.5", "batch"): [0.83, 0.85, math.nan]}
SECONDS = {"none": [0.010, 0.012, 0.011], "batch": [0.020, 0.022, 0.024]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "20261202-000000-study-d2l_dropout"
    root.mkdir()
    members = []
    for dropout in ("0", "0.5"):
        for seed in range(3):
            name = f"dropout={dropout}-seed={seed}"
            members.append({"dir": name, "settings": {"dropout": dropout}, "seed": seed, "status": "completed"})
            config = {"preset": "d2l_lenet", "dataset": "digits", "networks": ["none", "batch"], "seed": seed,
                      "data_seed": seed, "dropout": float(dropout), "epochs": 1, "steps": 0, "probes": ["activations"]}
            store = RunStore.create(root / name, config=config, provenance={}, metric_columns=COLUMNS)
            diverged = {}
            meta = {"available": True, "bn_mode": "train", "layers": ["conv0", "dense0"]}
            store.set_probe_meta("activations", {"networks": {"none": meta, "batch": meta}})
            for network in ("none", "batch"):
                final = FINALS[(dropout, network)][seed]
                if math.isnan(final):
                    diverged[network] = 5
                else:
                    store.append_metrics([{"step": 10, "network": network, "kind": "eval", "test_loss": 1.0,
                                           "test_accuracy": final}])
                for step in (0, 10):  # the magnitude: 1 + seed (conv0) and 10 * that (dense0), at the last step
                    scale = 1.0 if step == 10 else 100.0
                    store.append_probe("activations", network, step, {
                        "conv0.sq_mean": np.float32(scale * (1 + seed)),
                        "dense0.sq_mean": np.float32(scale * 10 * (1 + seed))})
            store.flush()
            store.set_status("completed", diverged=diverged, total_steps=10, steps_done=10,
                             step_seconds={network: SECONDS[network][seed] for network in SECONDS})
    record = {"name": "d2l_dropout", "size": "tiny", "base": "d2l_lenet", "description": "d2l ex. 6",
              "reproduces": "d2l ex. 6", "baseline": {"network": "none", "settings": {"dropout": "0"}},
              "variant_keys": ["dropout"], "x_key": None, "figures": ["activation_magnitude", "cost"]}
    (root / "sweep.json").write_text(json.dumps({"members": members, "study": record, "grid": {}, "seeds": [0, 1, 2]}))
    return root


@pytest.fixture(scope="module")
def data(study):
    return variant_data(collect_runs([study]).sweeps[0])


def test_variants_come_in_the_studys_order_with_the_baseline_first(data):
    assert data.contexts == [""]
    assert data.variants == ["none [dropout=0]", "batch [dropout=0]", "none [dropout=0.5]", "batch [dropout=0.5]"]
    assert data.baseline == "none [dropout=0]" and data.seeds == 3
    assert math.isnan(data.values[("", "batch [dropout=0.5]")][2])


def test_paired_study_table_by_hand(data):
    rows = {row[1]: row for row in paired_study_table(data).rows}
    assert rows["none [dropout=0] (baseline)"][2] == "80.00 ± 2.00 (n=3)"
    # batch, dropout 0: d = 5, 4, 6: +5.00 [+2.52, +7.48] (t(0.975, 2) = 4.303)
    assert rows["batch [dropout=0]"][4:] == ["+5.00 [+2.52, +7.48] (n=3)", "yes"]
    # none, dropout 0.5: d = -10, -8, -3: mean -7, s_d = sqrt((9 + 1 + 16) / 2) = 3.606, half = 8.957
    shown = rows["none [dropout=0.5]"][4]
    low, high = (float(v) for v in shown.split("[")[1].split("]")[0].split(", "))
    assert shown.startswith("-7.00 [") and (low, high) == pytest.approx((-7 - 8.957, -7 + 8.957), abs=0.02)
    assert rows["none [dropout=0.5]"][5] == "no"
    # batch, dropout 0.5, seed 2 diverged: 2 pairs, d = 3, 3: interval of width 0
    assert rows["batch [dropout=0.5]"][2] == "84.00 ± 1.41 (n=2, 1 missing)"
    assert rows["batch [dropout=0.5]"][4] == "+3.00 [+3.00, +3.00] (n=2), 1 unpaired"


def test_the_final_accuracy_figure_says_n_and_marks_the_baseline(data):
    with report_style():
        plot = plot_final_accuracy(data)
    axis = plot.figure.axes[0]
    texts = [t.get_text() for t in axis.texts]
    assert texts.count("n=3") == 3 and "n=2 (+1 diverged)" in texts
    assert axis.get_xticklabels()[0].get_text() == "none\ndropout=0\n(baseline)"


def test_activation_magnitude_is_the_last_measurement_averaged_over_seeds(data):
    with report_style():
        plot = plot_activation_magnitude(data)
    conv0, dense0 = plot.figure.axes[:2]
    assert conv0.get_title() == "after the norm of conv0"
    heights = [bar.get_height() for bar in conv0.patches]
    np.testing.assert_allclose(heights, [2.0] * 4)  # mean of 1, 2, 3 at the last step (not step 0's 100x)
    np.testing.assert_allclose([bar.get_height() for bar in dense0.patches], [20.0] * 4)


def test_cost_table_in_milliseconds_against_the_baseline_network(data):
    rows = {row[0]: row for row in cost_table(data).rows}
    # each run twice (two dropout members): 10, 12, 11 ms twice, std sqrt(4 / 5) = 0.89
    assert rows["none"][1] == "11.00 ± 0.89 (n=6)" and rows["none"][2] == "1.00x"
    assert rows["batch"][1] == "22.00 ± 1.79 (n=6)" and rows["batch"][2] == "2.00x"
