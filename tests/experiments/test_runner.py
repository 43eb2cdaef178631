"""The runner end to end at tiny size: pairing, divergence, the store, resume, compile counts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pandas as pd

import normlab.experiments.runner as runner
from normlab.data import load_dataset
from normlab.experiments import apply_overrides, default_config, resume_experiment, run_experiment
from normlab.store import RunStore, load_run
from normlab.train import state_at

TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32", "steps=24", "eval_every=8",
        "log_every=4", "probe_every=6", "report=false", "train_eval_size=128"]


def tiny_config(*extra):
    return apply_overrides(replace(default_config(), preset="tiny"), TINY + list(extra))


def test_the_networks_of_a_pair_share_every_parameter_at_step_0():
    config = tiny_config("networks=none,batch,noisy,layer")
    dataset = load_dataset("synthetic")
    specs, states = runner.build_group(config, dataset)
    baseline = specs[0]
    for spec, state in zip(specs[1:], states[1:]):
        assert spec.kernel_paths == baseline.kernel_paths
        for path in baseline.kernel_paths:
            np.testing.assert_array_equal(state_at(state.params, path), state_at(states[0].params, path))
            bias_path = path[:-1] + ("bias",)
            np.testing.assert_array_equal(state_at(state.params, bias_path), state_at(states[0].params, bias_path))


def test_a_tiny_run_writes_a_complete_store(tmp_path):
    result = run_experiment(tiny_config(), out=tmp_path, quiet=True)
    run = load_run(result.path)
    assert run.status == "completed" and result.diverged == {}
    metrics = pd.read_csv(result.path / "metrics.csv")
    train_rows = metrics.dropna(subset=["loss"])
    assert sorted(train_rows.step.unique()) == list(range(24))
    assert set(train_rows.network) == {"none", "batch"}
    evals = metrics.dropna(subset=["test_accuracy"])
    assert sorted(evals.step.unique()) == [0, 8, 16, 24]
    for probe in ("activations", "gradients", "distance"):
        for network in ("none", "batch"):
            data = run.probe(probe, network)
            assert list(data["step"]) == [0, 6, 12, 18]
    # The distance from init is 0 at step 0 and grows.
    distance = run.probe("distance", "batch")["total"]
    assert distance[0] == 0 and distance[-1] > 0
    assert run.probe_meta("activations")["networks"]["batch"]["bn_mode"] == "train"
    assert json.loads((result.path / "config.json").read_text())["networks"] == ["none", "batch"]


def test_a_diverging_baseline_is_recorded_and_its_twin_finishes(tmp_path):
    config = tiny_config("optimizer=sgd", "lr=20", "width=1", "steps=40", "eval_every=10")
    result = run_experiment(config, out=tmp_path, quiet=True)
    assert "none" in result.diverged, "the plain network should diverge at lr=20"
    assert "batch" not in result.diverged
    run = load_run(result.path)
    assert run.status == "completed"
    assert run.info["diverged"]["none"] == result.diverged["none"]
    batch_rows = run.metrics[(run.metrics.network == "batch")].dropna(subset=["loss"])
    assert batch_rows.step.max() == 39 and np.isfinite(batch_rows.loss).all()
    baseline_rows = run.metrics[(run.metrics.network == "none")].dropna(subset=["lr"])  # training rows
    assert baseline_rows.step.max() == result.diverged["none"]
    assert np.isnan(baseline_rows.loss.iloc[-1]) and np.isfinite(baseline_rows.loss.iloc[:-1]).all()


def test_the_group_step_is_traced_once_per_probe_set(tmp_path, monkeypatch):
    import normlab.experiments.compiled as compiled

    traces = []
    original = compiled.train_step

    def counting_train_step(spec, state, x, y):
        traces.append(spec.name)
        return original(spec, state, x, y)

    monkeypatch.setattr(compiled, "train_step", counting_train_step)
    run_experiment(tiny_config("steps=30"), out=tmp_path, quiet=True)
    # two compiled variants (with and without the probe bundle), each tracing both networks once
    assert len(traces) == 4


def _run_cli(args, **kwargs):
    script = Path(sys.executable).parent / "normlab"
    return subprocess.Popen(
        [str(script), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    settings = TINY[:-5] + ["steps=1500", "eval_every=100", "log_every=20", "probe_every=50",
                            "checkpoint_every=100", "report=false", "train_eval_size=128"]
    args = ["run", "quickstart", "--quiet", "--set", *settings]
    reference = subprocess.run([str(Path(sys.executable).parent / "normlab"), *args, "--out", str(tmp_path / "a")],
                               capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr

    process = _run_cli([*args, "--out", str(tmp_path / "b")])
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline:
        dirs = list((tmp_path / "b").glob("*")) if (tmp_path / "b").exists() else []
        if dirs and len(list((dirs[0] / "checkpoints").glob("*"))) >= 1:
            run_dir = dirs[0]
            break
        if process.poll() is not None:
            break
        time.sleep(0.05)
    assert run_dir is not None and process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed = load_run(run_dir)
    assert killed.status == "running"  # SIGKILL leaves no chance to write anything else
    assert not killed.metrics.empty

    resumed = subprocess.run([str(Path(sys.executable).parent / "normlab"), "run", "--resume", str(run_dir), "--quiet"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = load_run(next((tmp_path / "a").glob("*")))
    b = load_run(run_dir)
    assert b.status == "completed"
    pd.testing.assert_frame_equal(a.metrics.reset_index(drop=True), b.metrics.reset_index(drop=True))
    for probe in a.probe_names:
        for network in a.networks(probe):
            left, right = a.probe(probe, network), b.probe(probe, network)
            assert left.keys() == right.keys()
            for key in left:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{probe}/{network}/{key}")


def test_resume_starts_at_the_checkpoint_and_trains_only_the_remaining_steps(tmp_path):
    reference = run_experiment(tiny_config("checkpoint_every=8"), out=tmp_path / "a", quiet=True)
    assert load_run(reference.path).checkpoint_steps == [8, 16]
    # An interrupted copy whose rows before the last checkpoint are gone: a resume that trained
    # them again (instead of starting at step 16) would bring them back.
    resumed_dir = tmp_path / "b"
    shutil.copytree(reference.path, resumed_dir)
    RunStore.open(resumed_dir).set_status("interrupted")
    header, *rows = (resumed_dir / "metrics.csv").read_bytes().splitlines(keepends=True)
    assert header.startswith(b"step,")
    (resumed_dir / "metrics.csv").write_bytes(header + b"".join(row for row in rows if int(row.split(b",")[0]) >= 16))

    result = resume_experiment(resumed_dir, quiet=True)
    run = load_run(resumed_dir)
    assert run.info["resumed_from"] == 16 and result.steps == 24 and run.status == "completed"
    assert sorted(run.metrics.dropna(subset=["lr"]).step.unique()) == list(range(16, 24))
    assert sorted(run.metrics.dropna(subset=["test_loss"]).step.unique()) == [16, 24]
    want = load_run(reference.path).metrics
    pd.testing.assert_frame_equal(run.metrics.reset_index(drop=True), want[want.step >= 16].reset_index(drop=True))


def test_checkpoints_round_trip_noise_rng_state(tmp_path):
    """A noisy-BN network keeps typed PRNG keys in its state; a checkpoint must carry them."""
    from normlab.store import RunStore

    config = tiny_config("networks=none,noisy")
    dataset = load_dataset("synthetic")
    specs, states = runner.build_group(config, dataset)
    step_fn = runner.make_group_step(specs, ())
    x, y = jax.numpy.asarray(dataset.x_train[:32]), jax.numpy.asarray(dataset.y_train[:32])
    for i in range(2):  # move the weights and the noise rng counter away from their initial values
        states, _, _ = step_fn(states, x, y, jax.numpy.asarray(i), tuple({} for _ in states))
    store = RunStore.create(tmp_path / "run", config={}, provenance={}, metric_columns=runner.METRIC_COLUMNS)
    store.save_checkpoint(3, states, extra={"diverged": {}})
    step, restored = store.restore_checkpoint(runner.build_group(config, dataset)[1])
    restored = jax.tree.map(jax.numpy.asarray, restored)
    assert step == 3
    fresh = runner.build_group(config, dataset)[1]
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(fresh[1].rest), jax.tree.leaves(restored[1].rest))
        if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
    ), "the noise counter should have moved"
    for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(restored)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_stops_between_steps_with_a_checkpoint_and_one_line(tmp_path):
    settings = TINY[:-5] + ["steps=100000", "eval_every=200", "log_every=50", "probe_every=100",
                            "checkpoint_every=200", "report=false", "train_eval_size=128"]
    process = _run_cli(["run", "quickstart", "--quiet", "--out", str(tmp_path), "--set", *settings])
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        dirs = list(tmp_path.glob("*"))
        if dirs and list((dirs[0] / "checkpoints").glob("*.msgpack")):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in stderr
    run = load_run(next(tmp_path.glob("*")))
    assert run.status == "interrupted"
    assert run.info["steps_done"] in run.checkpoint_steps
    assert run.metrics.dropna(subset=["lr"]).step.max() == run.info["steps_done"] - 1


def test_run_experiment_writes_the_report_when_the_config_asks(tmp_path):
    config = tiny_config("steps=4", "eval_every=4", "probes=distance", "report=true")
    result = run_experiment(config, out=tmp_path, quiet=True)
    assert result.report == result.path / "report" / "report.html" and result.report.is_file()
    skipped = run_experiment(config, out=tmp_path, quiet=True, report=False)
    assert skipped.report is None and not (skipped.path / "report").exists()


def test_every_probe_field_is_set_by_exactly_one_setting():
    """A probe's fields but schedule and name: each set either by a flat setting of
    SHARED_PROBE_SETTINGS (every probe it names has the field) or as the option <probe>.<field>."""
    from normlab.experiments.config import SHARED_PROBE_SETTINGS, probe_option_types, shared_probe_fields
    from normlab.probes import probe_names
    from normlab.probes import probe_options as fields_of

    config = default_config()
    for setting, (probes, targets) in SHARED_PROBE_SETTINGS.items():
        assert hasattr(config, setting), setting
        names = set(targets) if isinstance(targets, tuple) else {targets}
        for probe in probes:
            assert probe in probe_names() and names <= set(fields_of(probe)), (setting, probe, targets)
        assert [probe for probe in probe_names() if setting in shared_probe_fields(probe).values()], setting
    for probe in probe_names():
        own, shared = set(probe_option_types(probe)), set(shared_probe_fields(probe))
        assert not own & shared and own | shared | {"schedule"} == set(fields_of(probe)), probe
    built = {probe.name: probe for probe in runner.build_probes(tiny_config(
        "probes=full,divergence,curvature", "landscape_range=0.25,2", "probe_bn_mode=eval", "hessian_top.k=3",
        "divergence.points=4", "lanczos_steps=7", "curvature_per_layer=true"))}
    assert (built["beta_smoothness"].low, built["beta_smoothness"].high) == (0.25, 2.0)
    assert (built["divergence"].low, built["divergence"].points) == (1e-5, 4)  # its own grid, not the walk's
    assert built["hessian_top"].k == 3 and built["gradient_concentration"].k == 10
    assert {p.lanczos_steps for p in built.values() if hasattr(p, "lanczos_steps")} == {7}
    assert built["hessian_top"].per_layer and built["hessian_trace"].per_layer
    assert {p.name for p in built.values() if p.bn_mode == "eval"} == set(built) - {"gradients", "distance"}
    assert (
        built["divergence"].spacing == "log" and built["divergence"].schedule(4) and not built["divergence"].schedule(6)
    )
