"""Findings in words (normlab.report.findings) on synthetic runs whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import report_synthetic as synthetic

from normlab.experiments.summary import summary_lines
from normlab.report import write_report
from normlab.report.findings import findings, replicate_groups
from normlab.store import RunStore, load_run

EVAL_STEPS = (0, 10, 20, 30, 40)


def _run(path, *, accuracy: dict, activations: dict | None = None, tracked: dict | None = None,
         loss: dict | None = None, num_test: int | None = 360, seed: int = 0):
    """A run with exactly the given numbers.

    accuracy: network -> test accuracy at EVAL_STEPS; activations: network -> {layer: (mean0, mean1,
    std0, std1)} (a linear path between, 5 measurements); tracked: network -> tracked gradient values;
    loss: network -> per-step training loss.
    """
    networks = list(accuracy)
    config = synthetic.default_config(networks=networks, steps=40, seed=seed, data_seed=seed)
    store = RunStore.create(path, config=config, provenance={"seeds": {"seed": seed}},
                            metric_columns=synthetic.METRIC_COLUMNS)
    rows = []
    for network in networks:
        for step, value in zip(EVAL_STEPS, accuracy[network]):
            rows.append({"step": step, "network": network, "test_loss": 1 - value, "test_accuracy": value,
                         "train_eval_loss": 1 - value, "train_eval_accuracy": value})
        for step, value in enumerate((loss or {}).get(network, [])):
            rows.append({"step": step, "network": network, "loss": value, "accuracy": 0.5, "lr": 0.1})
    store.append_metrics(rows)
    if activations:
        layers = list(next(iter(activations.values())))
        store.set_probe_meta("activations", {"networks": {n: {"layers": layers} for n in networks}})
        for network, per_layer in activations.items():
            for t, step in enumerate(range(0, 40, 10)):
                arrays = {}
                for layer, (m0, m1, s0, s1) in per_layer.items():
                    arrays[f"{layer}.mean"] = np.float32(m0 + (m1 - m0) * t / 3)
                    arrays[f"{layer}.std"] = np.float32(s0 + (s1 - s0) * t / 3)
                store.append_probe("activations", network, step, arrays)
    if tracked:
        store.set_probe_meta("gradients", {"networks": {n: {"tracked_layer": "dense3", "tracked_index": 7}
                                                        for n in networks}})
        for network, values in tracked.items():
            for step, value in enumerate(values):
                store.append_probe("gradients", network, step * 10, {"tracked": np.float32(value),
                                                                      "dense3.std": np.float32(abs(value))})
    if num_test:
        store.write_json("start/start.json", {"data": {"num_test": num_test, "num_train": 1000}, "networks": {}})
    store.flush()
    store.set_status("completed", steps_done=40)
    return path


def _texts(items, topic):
    return [f.text for f in items if f.topic == topic]


def test_drift_is_described_only_where_the_activations_move(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.1] * 5, "batch": [0.1] * 5}, activations={
        "none": {"dense0": (0.0, 1.0, 1.0, 1.0), "dense1": (0.0, 0.0, 0.5, 2.0)},
        "batch": {"dense0": (0.0, 0.1, 1.0, 1.1), "dense1": (0.0, -0.2, 1.0, 0.85)},
    })
    none, batch = _texts(findings(load_run(run)), "activations")
    assert none.startswith("Activations of none drifted")
    assert "dense0 mean +0.00 -> +1.00 (1 start-stds), std 1.00 -> 1.00 (x1.00)" in none
    assert "std 0.50 -> 2.00 (x4.00)" in none
    assert batch.startswith("Activations of batch stayed put") and "drift" not in batch.split("(")[0][25:]


def test_no_network_is_said_to_drift_when_none_does(tmp_path):
    steady = {"dense0": (0.2, 0.2, 1.0, 1.0), "dense1": (0.0, 0.05, 2.0, 2.1)}
    run = _run(tmp_path / "r", accuracy={"none": [0.1] * 5, "batch": [0.1] * 5},
               activations={"none": steady, "batch": steady})
    texts = _texts(findings(load_run(run)), "activations")
    assert len(texts) == 2 and all("stayed put" in t and "drifted" not in t for t in texts)


def test_a_shrinking_std_is_drift_too(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.1] * 5},
               activations={"none": {"dense0": (0.0, 0.0, 1.0, 0.7)}})
    assert "drifted" in _texts(findings(load_run(run)), "activations")[0]


def test_speed_uses_the_highest_level_every_network_reached(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.1, 0.5, 0.85, 0.92, 0.96], "batch": [0.1, 0.9, 0.95, 0.97, 0.97]})
    (speed,) = _texts(findings(load_run(run)), "speed")
    assert ">= 95% test accuracy" in speed and "at step 40 (none), 20 (batch)" in speed
    assert "evaluations every 10 steps" in speed


def test_loss_speed_level_is_a_quarter_of_the_initial_loss(tmp_path):
    # initial mean loss 2.0 -> the largest listed level <= 0.5 is 0.5
    none = [2.0] * 40 + [0.3] * 40
    batch = [2.0] * 20 + [0.1] * 60
    run = _run(tmp_path / "r", accuracy={"none": [0.1] * 5, "batch": [0.1] * 5}, loss={"none": none, "batch": batch})
    (text,) = [t for t in _texts(findings(load_run(run)), "speed") if t.startswith("Training loss")]
    # a 20-step window ending at s holds 59 - s (none) / 39 - s (batch) values of 2.0; its mean is
    # <= 0.5 from 2 such values on for none (step 57) and from 4 for batch (step 35)
    assert "at or below 0.5" in text and "at step 57 (none), 35 (batch)" in text


def test_an_accuracy_difference_within_its_error_is_unresolved_and_stated_last(tmp_path):
    # p ~ 0.98, n_test = 360: bound = 2 sqrt(2 * 0.98 * 0.02 / 360) = 2.09 pp
    run = _run(
        tmp_path / "r",
        accuracy={"none": [0.1, 0.9, 0.97, 0.978, 0.978], "batch": [0.1, 0.95, 0.98, 0.983, 0.983]},
        activations={"none": {"dense0": (0, 1, 1, 1)}, "batch": {"dense0": (0, 0, 1, 1)}},
    )
    items = findings(load_run(run))
    bound = 2 * math.sqrt(2 * 0.9805 * 0.0195 / 360)
    assert items[-1].topic == "accuracy" and items[-1].resolved is False
    assert (
        f"+0.50 pp; within twice the standard error of a difference on 360 test examples ({100 * bound:.2f} pp)"
        in items[-1].text
    )
    assert "not an accuracy difference this run can resolve" in items[-1].text


def test_a_resolved_accuracy_difference_leads(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.1, 0.5, 0.6, 0.7, 0.8], "batch": [0.1, 0.8, 0.9, 0.95, 0.95]})
    items = findings(load_run(run))
    assert items[0].topic == "accuracy" and items[0].resolved is True
    assert "none 80.00% final, 80.00% best; batch 95.00% final, 95.00% best" in items[0].text
    assert "batch - none (final): +15.00 pp; larger than" in items[0].text


def test_without_a_recorded_test_size_the_resolution_is_unknown(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.5] * 5, "batch": [0.6] * 5}, num_test=None)
    (text,) = _texts(findings(load_run(run)), "accuracy")
    assert "resolution is unknown" in text


def test_gradient_spread_and_its_ratio(tmp_path):
    run = _run(tmp_path / "r", accuracy={"none": [0.1] * 5, "batch": [0.1] * 5},
               tracked={"none": [1, -1, 1, -1], "batch": [0.5, -0.5, 0.5, -0.5]})
    (text,) = _texts(findings(load_run(run)), "gradients")
    assert "dense3 kernel entry 7" in text and "std over 4 measurements" in text
    assert "none 1; batch 0.5 (0.5x the none spread: smaller)" in text


def test_replicates_give_mean_sd_and_n(tmp_path):
    runs = [load_run(_run(tmp_path / f"s{seed}", seed=seed, tracked={"none": [v, -v], "batch": [v, -v]},
                          accuracy={"none": [0.5] * 5, "batch": [0.5 + d] * 5}))
            for seed, (v, d) in enumerate([(1.0, 0.10), (2.0, 0.20), (3.0, 0.30)])]
    assert [len(g) for g in replicate_groups(runs)] == [3]
    items = findings(runs)
    (accuracy,) = _texts(items, "accuracy")
    assert "batch - none (final): +20.00 pp ± 10.00 pp (n=3)" in accuracy
    assert "over 3 seeds" in accuracy and "larger than" in accuracy  # 20 > 2 * 10 / sqrt(3)
    assert "none 2 ± 1 (n=3)" in _texts(items, "gradients")[0]


def test_the_summary_and_the_report_lead_with_the_findings(pair_run, pair_report):
    lines = summary_lines(pair_run)
    first = [f.short or f.text for f in findings(load_run(pair_run))][0]
    assert lines[1].startswith("- " + first[:40])
    assert lines.index(next(line for line in lines if line.startswith("network"))) > 1
    html = pair_report.read_text(encoding="utf-8")
    assert html.index('id="findings"') < html.index('id="start"') < html.index('id="runs"')
    assert 'href="#fig-activation_moments"' in html and 'id="fig-activation_moments"' in html


@pytest.mark.parametrize("differ", [None, "dense1.kernel"])
def test_start_section_says_identical_only_when_the_fingerprints_match(tmp_path, differ):
    path = synthetic.make_run(tmp_path / "run", steps=10, probes=(), info={"param_counts": {"none": 500, "batch": 548}})
    store = RunStore.open(path)
    synthetic.write_start(store, ("none", "batch"), differ=differ, num_train=200)
    html = write_report([path], out=tmp_path / "report", video=False).read_text(encoding="utf-8")
    start = html[html.index('id="start"'):html.index('id="runs"')]
    assert "start_examples.png" in start and "start_inputs.png" in start and "start_weights.png" in start
    identical = 4 if differ is None else 3
    assert f"{identical} of the 4 kernels have the same SHA-256 fingerprint in all of none, batch" in start
    assert ("Kernels that differ between the networks are overlaid" in start) == (differ is not None)
    assert "The 4 bias vectors start all 0; 4 of them identical in every network." in start
    assert "dense0.norm_scale" in start and "2.50" in start  # 500 parameters / 200 samples


def test_landscape_type_probes_report_the_median_of_their_declared_headline(tmp_path):
    path = _run(tmp_path / "r", accuracy={"none": [0.1] * 5, "batch": [0.1] * 5})
    store = RunStore.open(path)
    store.set_probe_meta("landscape", {"networks": {n: {"headline": "spread"} for n in ("none", "batch")}})
    spreads = {"none": [[1.0, 3.0], [5.0, 7.0], [2.0, 2.0]], "batch": [[0.1, 0.3], [0.2, 0.2], [0.5, 0.5]]}
    for network, per_step in spreads.items():
        for step, values in enumerate(per_step):
            store.append_probe("landscape", network, step, {"spread": np.float32(values)})
    store.flush()
    (text,) = _texts(findings(load_run(path)), "landscape")
    # per-step means 2, 6, 2 -> median 2; 0.2, 0.2, 0.5 -> 0.2
    assert text == ("landscape: median over the run of the loss band along the gradient (max - min over step "
                    "sizes; S18 Fig. 4a): none 2, batch 0.2.")
    assert _texts(findings(load_run(path)), "predictiveness") == []
