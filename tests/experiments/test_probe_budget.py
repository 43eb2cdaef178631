"""probe_budget end to end: measured costs, the chosen steps recorded and measured, kept on resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import normlab.experiments.runner as runner
from normlab.experiments import apply_overrides, default_config, resume_experiment, run_experiment
from normlab.probes.budget import budget_schedules
from normlab.store import load_run

TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32", "steps=40", "eval_every=20",
        "log_every=5", "checkpoint_every=10", "probes=cheap", "probe_budget=0.2", "report=false",
        "train_eval_size=64"]


def _config():
    return apply_overrides(replace(default_config(), preset="budget"), TINY)


def _stored_steps(path):
    run = load_run(path)
    return {p: [int(s) for s in run.probe(p, "batch")["step"]] for p in run.probe_names}


def test_a_budgeted_run_measures_at_the_recorded_steps_and_a_resume_keeps_them(tmp_path, monkeypatch):
    real_batch = runner._batch

    def interrupting_batch(config, dataset, batches, step):
        if step == 23:
            raise KeyboardInterrupt
        return real_batch(config, dataset, batches, step)

    monkeypatch.setattr(runner, "_batch", interrupting_batch)
    with pytest.raises(runner.RunInterrupted) as stopped:
        run_experiment(_config(), out=tmp_path, quiet=True)
    path = stopped.value.path
    chosen = json.loads((path / "run.json").read_text())["probe_schedule"]
    assert chosen["budget"] == 0.2 and set(chosen["steps"]) == {"activations", "gradients", "distance"}
    # the steps are the scheduler's for the recorded costs (the costs themselves are timings)
    expected = budget_schedules(40, 0.2, chosen["costs"])
    assert chosen["steps"] == {name: list(steps) for name, steps in expected.items()}
    for name, steps in chosen["steps"].items():
        assert json.loads((path / "probes" / name / "meta.json").read_text())["steps"] == steps

    def no_measuring(*_args, **_kwargs):
        raise AssertionError("a resumed run must not measure the probe costs again")

    monkeypatch.setattr(runner, "_batch", real_batch)
    monkeypatch.setattr(runner, "measured_costs", no_measuring)
    result = resume_experiment(path, quiet=True)
    assert result.status == "completed"
    assert json.loads((path / "run.json").read_text())["probe_schedule"] == chosen
    assert _stored_steps(path) == chosen["steps"]
