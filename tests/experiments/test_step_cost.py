"""step_cost_repeats: each network's plain step timed before training, without changing the run."""

from __future__ import annotations

import math

import pandas as pd

from normlab.experiments import run_experiment
from normlab.store import load_run
from reliability_helpers import tiny_config


def test_step_seconds_are_recorded_per_network_and_leave_training_as_it_was(tmp_path):
    timed = run_experiment(tiny_config("steps=8", "networks=none,batch", "step_cost_repeats=3"),
                           run_dir=tmp_path / "timed", quiet=True, report=False)
    plain = run_experiment(tiny_config("steps=8", "networks=none,batch"), run_dir=tmp_path / "plain", quiet=True,
                           report=False)
    seconds = load_run(timed.path).info["step_seconds"]
    assert set(seconds) == {"none", "batch"} and all(math.isfinite(s) and s > 0 for s in seconds.values())
    assert "step_seconds" not in load_run(plain.path).info
    pd.testing.assert_frame_equal(load_run(timed.path).metrics, load_run(plain.path).metrics)
