"""The Santurkar probes inside the runner's compiled group step, on normlab's own models.

Probes must not change training: the group step with probes returns the same new states
(parameters, BN running statistics, optimizer state) as without, and its outputs are finite,
fixed-shape arrays under each probe's name, equal to what each probe measures on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from normlab.experiments.runner import make_group_step
from normlab.models import build_model
from normlab.probes import ProbeContext, make_probe, probe_setups
from normlab.train import make_network, make_optimizer, train_step

NAMES = ("ics", "landscape", "predictiveness", "beta_smoothness", "divergence")


def _group(model: str, optimizer: str):
    if model == "mlp":
        options, data = dict(input_shape=(6, 6, 1), num_classes=10, width=0.125), "classification"
    else:
        options, data = dict(input_shape=(10,), num_classes=0, depth=4), "regression"
    specs, states = [], []
    for norm in ("none", "batch"):
        network = build_model(model, norm=norm, rngs=nnx.Rngs(params=0, noise=1, dropout=2), **options)
        tx, schedule = make_optimizer(optimizer, 0.05 if model == "mlp" else 1e-3, total_steps=100)
        spec, state = make_network(norm, network, tx, schedule, task=network.task)
        specs.append(spec)
        states.append(state)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16,) + options["input_shape"]), jnp.float32)
    if data == "regression":
        y = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
    else:
        y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
    return tuple(specs), tuple(states), x, y


@pytest.mark.parametrize("model,optimizer", [("mlp", "momentum"), ("dln", "sgd")])
def test_probes_in_the_group_step_leave_training_unchanged(model, optimizer):
    specs, states, x, y = _group(model, optimizer)
    probes = tuple(make_probe(name) for name in NAMES)
    init = probe_setups(probes, specs, states)
    plain, probed = make_group_step(specs, ()), make_group_step(specs, probes)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731 (the group step donates its states)
    for step in range(2):  # the second step has a momentum buffer and advanced running statistics
        expected, metrics, _ = plain(copy(states), x, y, jnp.int32(step), init)
        got, probed_metrics, outputs = probed(copy(states), x, y, jnp.int32(step), init)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(probed_metrics, metrics, rtol=1e-6)
        for spec, per_network in zip(specs, outputs):
            assert set(per_network) == set(NAMES)
            for probe in probes:
                arrays = per_network[probe.name]
                assert probe.headline.key in arrays
                for key, value in arrays.items():
                    assert np.all(np.isfinite(np.asarray(value))), (spec.name, probe.name, key)
            assert per_network["ics"]["l2"].shape == (len(spec.kernel_paths),)
        if step == 1:
            for spec, state, initial, per_network in zip(specs, states, init, outputs):
                alone = jax.jit(
                    lambda state, initial, spec=spec: measure_alone(spec, probes, state, x, y, step, initial)
                )
                want = alone(copy(state), initial)
                for probe in probes:
                    assert per_network[probe.name].keys() == want[probe.name].keys()
                    for key, value in want[probe.name].items():
                        np.testing.assert_allclose(np.asarray(per_network[probe.name][key]), np.asarray(value),
                                                   rtol=1e-4, atol=1e-6, err_msg=f"{spec.name} {probe.name} {key}")
        states = expected


def measure_alone(spec, probes, state, x, y, step, setup) -> dict:
    """Each probe's ``measure`` on its own context (no shared pieces), built from a plain ``train_step``."""
    _, result = train_step(spec, state, x, y)
    context = ProbeContext(spec=spec, state=state, x=x, y=y, loss=result.loss, grads=result.grads,
                           activations=result.intermediates, learning_rate=spec.learning_rate(step),
                           step=jnp.int32(step), setup=setup)
    return {probe.name: probe.measure(context) for probe in probes}


def test_the_gradient_walk_is_traced_once_per_network_per_step(monkeypatch):
    """landscape, predictiveness and beta_smoothness (one grid) share one walk; divergence has its own."""
    import normlab.probes.landscape as landscape

    calls = []
    original = landscape.compute_walk

    def counting(ctx, etas, **options):
        calls.append(ctx.spec.name)
        return original(ctx, etas, **options)

    monkeypatch.setattr(landscape, "compute_walk", counting)
    specs, states, x, y = _group("dln", "sgd")
    probes = tuple(make_probe(name) for name in ("landscape", "predictiveness", "beta_smoothness", "divergence"))
    step = make_group_step(specs, probes)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
    setups = probe_setups(probes, specs, states)
    step(copy(states), x, y, jnp.int32(0), setups)
    # one walk for the three probes of the shared grid, one for divergence, per network
    assert sorted(calls) == sorted([spec.name for spec in specs for _ in range(2)])
    step(copy(states), x, y, jnp.int32(1), setups)  # compiled: no new trace
    assert len(calls) == 2 * len(specs)
