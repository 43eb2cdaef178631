"""The bn_parameters probe against NumPy on a known model state: gamma and beta written into a
BNLeNet's state, then measured; frozen, absent and missing factors; the layer names."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from normlab.models import build_model
from normlab.probes import ProbeContext, declared_keys, make_probe, probe_meta
from normlab.train import make_network, make_optimizer


def _network(norm, model="lenet", **options):
    shape = (28, 28, 1) if model == "lenet" else (8, 8, 1)
    built = build_model(model, input_shape=shape, num_classes=10, norm=norm, rngs=nnx.Rngs(params=0, noise=1),
                        **options)
    tx, schedule = make_optimizer("sgd", 0.1, total_steps=10)
    return make_network(norm, built, tx, schedule, task=built.task)


def _measure(probe, spec, state):
    ctx = ProbeContext(spec=spec, state=state, x=None, y=None, loss=None, grads=None, activations=(),
                       learning_rate=None, step=None)
    return {key: np.asarray(value) for key, value in probe.measure(ctx).items()}


def _set(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]].set_value(jnp.asarray(value, jnp.float32))


def _reference(values, default, edges):
    deviation = np.asarray(values, np.float64) - default
    counts, _ = np.histogram(deviation, bins=edges)
    return {"hist": counts, "outside": int(np.sum((deviation < edges[0]) | (deviation > edges[-1]))),
            "mean": values.mean(), "std": values.std(), "dev": np.abs(deviation).mean()}


def test_gamma_and_beta_of_every_bn_layer_match_numpy():
    spec, state = _network("batch")
    probe = make_probe("bn_parameters", bins=8, value_range=1.0)
    meta = probe_meta(probe, spec)
    assert meta["layers"] == ["conv0", "conv1", "dense0", "dense1"] and meta["bn_mode"] == "none"
    assert meta["factors"]["conv0"] == {"gamma": "trained", "beta": "trained"}
    rng = np.random.default_rng(0)
    written = {}
    for index, (layer, units) in enumerate(zip(meta["layers"], (6, 16, 120, 84))):
        gamma = rng.normal(1.0, 0.6, units).astype(np.float32)
        beta = rng.normal(0.0, 0.7, units).astype(np.float32)
        gamma[0], beta[0] = 2.5, -1.0  # beyond the edges (outside), and exactly on the first edge (inside)
        _set(state.params, ("hidden", index, "norm", "scale"), gamma)
        _set(state.params, ("hidden", index, "norm", "bias"), beta)
        written[layer] = {"gamma": gamma, "beta": beta}
    result = _measure(probe, spec, state)
    assert set(result) == set(declared_keys(probe.outputs, meta))
    edges = np.asarray(meta["edges"])
    np.testing.assert_allclose(edges, np.linspace(-1, 1, 9))
    for layer, factors in written.items():
        for factor, default in (("gamma", 1.0), ("beta", 0.0)):
            values = factors[factor]
            expected = _reference(values, default, edges)
            np.testing.assert_array_equal(result[f"{layer}.{factor}"], values)
            np.testing.assert_array_equal(result[f"{layer}.{factor}_hist"], expected["hist"], err_msg=(layer, factor))
            assert result[f"{layer}.{factor}_outside"] == expected["outside"]
            assert result[f"{layer}.{factor}_hist"].sum() + expected["outside"] == len(values)
            for stat in ("mean", "std", "dev"):
                assert result[f"{layer}.{factor}_{stat}"] == pytest.approx(expected[stat], rel=1e-5, abs=1e-6)
    assert result["conv0.gamma_outside"] >= 1 and result["conv0.beta_hist"][0] >= 1


def test_at_initialization_every_gamma_is_one_and_every_beta_zero():
    spec, state = _network("batch")
    result = _measure(make_probe("bn_parameters"), spec, state)
    for layer in ("conv0", "conv1", "dense0", "dense1"):
        assert result[f"{layer}.gamma_dev"] == 0 and result[f"{layer}.beta_dev"] == 0
        middle = len(result[f"{layer}.gamma_hist"]) // 2  # 0 is the left edge of the middle bin
        assert result[f"{layer}.gamma_hist"][middle] == len(result[f"{layer}.gamma"])


def test_frozen_factors_are_read_where_they_are_and_absent_ones_act_as_their_default():
    spec, state = _network("frozen_gamma")
    probe = make_probe("bn_parameters")
    meta = probe_meta(probe, spec)
    assert meta["factors"]["dense0"] == {"gamma": "frozen", "beta": "trained"}
    _set(state.params, ("hidden", 2, "norm", "bias"), np.full(120, 0.25))
    result = _measure(probe, spec, state)
    np.testing.assert_array_equal(result["dense0.gamma"], np.ones(120))
    assert result["dense0.beta_mean"] == pytest.approx(0.25) and result["dense0.beta_dev"] == pytest.approx(0.25)
    spec, state = _network("rms", model="mlp", width=0.125)
    meta = probe_meta(probe, spec)
    assert set(meta["factors"]["dense0"].values()) == {"trained", "absent"}
    result = _measure(probe, spec, state)
    assert np.all(result["dense0.beta"] == 0) and result["dense0.beta_hist"].sum() == len(result["dense0.beta"])


@pytest.mark.parametrize("norm", ["none", "no_affine"])
def test_a_network_without_gamma_or_beta_has_nothing_to_measure(norm):
    spec, state = _network(norm)
    probe = make_probe("bn_parameters")
    assert probe_meta(probe, spec)["available"] is False and _measure(probe, spec, state) == {}


def test_an_excluded_layer_has_no_entry():
    spec, _state = _network("batch", model="mlp", width=0.125, norm_exclude=(1,))
    assert probe_meta(make_probe("bn_parameters"), spec)["layers"] == ["dense0", "dense2"]
