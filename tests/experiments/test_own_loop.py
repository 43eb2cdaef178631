"""Probes in a user's own training loop (``normlab.Monitor``, ``normlab.measure``), the example
script that uses them, and ``restore_model``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import normlab
from normlab.errors import NormlabError
from normlab.experiments.runner import make_group_step
from normlab.models import build_model
from normlab.probes import make_probe, probe_setups
from normlab.store.layout import START_META_FILE
from normlab.train import make_network

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_training_loop.py"


def _example():
    spec = importlib.util.spec_from_file_location("own_training_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _models():
    options = dict(input_shape=(6, 6, 1), num_classes=10, width=0.125)
    return {norm: build_model("mlp", norm=norm, rngs=nnx.Rngs(params=0, noise=1, dropout=2), **options)
            for norm in ("batch", "none")}


def _batch():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(16, 6, 6, 1)), jnp.float32), jnp.asarray(rng.integers(0, 10, 16), jnp.int32))


def test_monitor_measures_what_the_runners_group_step_measures(tmp_path):
    """The same probes on the same networks and batch: the runner's compiled step is the reference."""
    names = ("activations", "gradients", "distance", "ics", "landscape")
    x, y = _batch()
    tx = optax.sgd(0.05)
    monitor = normlab.Monitor(_models(), tx, learning_rate=0.05, probes=names, probe_every=1, run_dir=tmp_path / "run")
    got = monitor.observe(x, y, step=0)

    reference_models = _models()
    pairs = [make_network(n, m, tx, optax.constant_schedule(0.05)) for n, m in reference_models.items()]
    specs, states = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    probes = tuple(make_probe(name) for name in names)
    _, _, outputs = make_group_step(specs, probes)(states, x, y, jnp.int32(0), probe_setups(probes, specs, states))
    for network, expected in zip(("batch", "none"), outputs):
        assert set(got[network]) == set(names)
        for probe in names:
            assert set(got[network][probe]) == set(expected[probe])
            for key, value in expected[probe].items():
                np.testing.assert_allclose(np.asarray(got[network][probe][key]), np.asarray(value),
                                           rtol=1e-5, atol=1e-6, err_msg=f"{network} {probe} {key}")
    monitor.close()
    run = normlab.load_run(tmp_path / "run")
    for probe in names:  # stored as measured
        stored = run.probe(probe, "none")
        assert stored["step"].tolist() == [0]
        for key, value in got["none"][probe].items():
            np.testing.assert_array_equal(stored[key][0], np.asarray(value))


def test_monitor_rejects_bad_settings_before_writing(tmp_path):
    with pytest.raises(NormlabError, match="probe_every"):
        normlab.Monitor(_models(), optax.sgd(0.1), probe_every=0, run_dir=tmp_path / "a")
    with pytest.raises(NormlabError, match="unknown network"):
        normlab.Monitor(_models(), optax.sgd(0.1), optimizers={"bn": None}, run_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_example_trains_a_pair_and_writes_a_run_normlab_reads(tmp_path):
    example = _example()
    path = Path(example.main(["--steps", "12", "--probe-every", "4", "--out", str(tmp_path / "runs")]))
    run = normlab.load_run(path)
    assert run.status == "completed"
    assert run.file(START_META_FILE).is_file()  # the start views a `normlab run` stores
    assert run.config["networks"] == ["batch", "none"]
    assert run.probe_names == ["activations", "distance", "gradients"]
    for probe in run.probe_names:
        for network in ("batch", "none"):
            assert run.probe(probe, network)["step"].tolist() == [0, 4, 8]
        assert run.probe_meta(probe)["networks"]["batch"]["headline"]["key"]
    training = run.training("batch")
    assert training["step"].tolist() == list(range(12)) and training["loss"].notna().all()
    final = run.final_metrics()
    assert final["batch"]["step"] == 12 and 0.0 <= final["none"]["test_accuracy"] <= 1.0

    # the pure level (normlab.measure inside our own jit) measures the same numbers
    pure = normlab.load_run(example.main(["--steps", "12", "--probe-every", "4", "--out", str(tmp_path / "pure"),
                                          "--pure"]))
    for probe in run.probe_names:
        for key, value in run.probe(probe, "batch").items():
            np.testing.assert_allclose(pure.probe(probe, "batch")[key], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pure.training()["loss"], run.training()["loss"], rtol=1e-6)

    # restore the checkpoint into a fresh model of the example's class
    data = normlab.load_dataset("digits")
    model = example.MLP(64, 64, 10, batch_norm=True, rngs=nnx.Rngs(1))
    assert normlab.restore_model(model, path, network="batch") == 12
    batch_stats = nnx.state(model, nnx.BatchStat)
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(batch_stats))
    logits = model(jnp.asarray(data.x_test), train=False)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(data.y_test)))
    assert accuracy == pytest.approx(final["batch"]["test_accuracy"], abs=1e-6)
    with pytest.raises(NormlabError, match="pass network"):
        normlab.restore_model(model, path)

    from normlab.report import write_report
    from normlab.report.tensorboard import export_tensorboard

    html = write_report([path], out=tmp_path / "report")
    assert "activations" in html.read_text()
    assert any((export_tensorboard(path, tmp_path / "tb") / "batch").iterdir())
