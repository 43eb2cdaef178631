"""The Part 1 probes against plain NumPy recomputations of what they measure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from normlab.probes import ActivationsProbe, DistanceProbe, GradientsProbe, ProbeContext, active_probes, at_steps, every
from normlab.probes.gradients import gradient_edges
from normlab.train import make_network, make_optimizer, state_at, train_step
from reference_models import TinyMLP


def _context(batch_norm=True, steps_before=3):
    tx, schedule = make_optimizer("sgd", 0.1, total_steps=10)
    spec, state = make_network("net", TinyMLP(batch_norm=batch_norm, rngs=nnx.Rngs(0)), tx, schedule)
    init_params = jax.tree.map(jnp.copy, state.params)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(16, 4)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 16), jnp.int32)
    for _ in range(steps_before):
        state, _ = train_step(spec, state, x, y)
    _, outputs = train_step(spec, state, x, y)
    return spec, ProbeContext(
        spec=spec, state=state, x=x, y=y, loss=outputs.loss, grads=outputs.grads,
        activations=outputs.intermediates, setup={"distance": init_params},
        learning_rate=jnp.asarray(0.1), step=jnp.asarray(steps_before),
    )


def _reference_activations(spec, ctx, train=True):
    """A plain forward pass that records each hidden pre-activation by hand."""
    model = nnx.merge(spec.graphdef, ctx.state.params, ctx.state.rest, copy=True)
    h = np.asarray(ctx.x)
    layers = []
    for i, dense in enumerate((model.dense0, model.dense1)):
        h = np.asarray(h) @ np.asarray(dense.kernel[...]) + np.asarray(dense.bias[...])
        if len(model.norms):
            bn = model.norms[i]
            mean, var = (h.mean(0), h.var(0)) if train else (np.asarray(bn.mean[...]), np.asarray(bn.var[...]))
            h = (h - mean) / np.sqrt(var + bn.epsilon) * np.asarray(bn.scale[...]) + np.asarray(bn.bias[...])
        layers.append(h)
        h = np.maximum(h, 0)
    return layers


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_activations_probe_matches_numpy(batch_norm, bn_mode):
    spec, ctx = _context(batch_norm)
    probe = ActivationsProbe(bins=10, value_range=2.0, tracked_layer=-1, tracked_unit=2, bn_mode=bn_mode)
    result = jax.jit(probe.measure)(ctx)
    edges = np.linspace(-2, 2, 11)
    for name, values in zip(spec.activation_names, _reference_activations(spec, ctx, train=bn_mode == "train")):
        flat = values.ravel()
        np.testing.assert_array_equal(result[f"{name}.hist"], np.histogram(flat, bins=edges)[0])
        assert int(result[f"{name}.outside"]) == int(np.sum(np.abs(flat) > 2.0))
        np.testing.assert_allclose(result[f"{name}.mean"], flat.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result[f"{name}.std"], flat.std(), rtol=1e-5)
        np.testing.assert_allclose(result[f"{name}.sq_mean"], np.mean(flat**2), rtol=1e-5)
        np.testing.assert_allclose(result[f"{name}.unit_mean"], values.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result[f"{name}.unit_std"], values.std(0), rtol=1e-5, atol=1e-6)
    last = _reference_activations(spec, ctx, train=bn_mode == "train")[-1]
    np.testing.assert_allclose(result["tracked.percentiles"], np.percentile(last[:, 2], [15, 50, 85]), rtol=1e-5)
    meta = probe.meta(spec)
    assert meta["bn_mode"] == bn_mode and meta["tracked_layer"] == "dense1" and len(meta["edges"]) == 11


def test_eval_mode_changes_what_a_bn_network_reports():
    spec, ctx = _context(batch_norm=True)
    train = ActivationsProbe(bn_mode="train").measure(ctx)
    evaluated = ActivationsProbe(bn_mode="eval").measure(ctx)
    assert not np.allclose(train["dense0.unit_mean"], evaluated["dense0.unit_mean"])


def test_gradients_probe_matches_numpy():
    spec, ctx = _context(batch_norm=True)
    probe = GradientsProbe(tracked_layer=1, tracked_index=7)
    result = jax.jit(probe.measure)(ctx)
    edges = gradient_edges()
    for name, path in zip(spec.weight_layer_names, spec.kernel_paths):
        grad = np.asarray(state_at(ctx.grads, path)).ravel()
        np.testing.assert_allclose(result[f"{name}.mean"], grad.mean(), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(result[f"{name}.std"], grad.std(), rtol=1e-5)
        np.testing.assert_allclose(result[f"{name}.norm"], np.sqrt(np.sum(grad**2)), rtol=1e-5)
        np.testing.assert_array_equal(result[f"{name}.hist"], np.histogram(grad, bins=edges)[0])
    tracked = np.asarray(state_at(ctx.grads, spec.kernel_paths[1])).ravel()[7]
    assert float(result["tracked"]) == pytest.approx(float(tracked), rel=1e-6)


def test_distance_probe_matches_numpy():
    spec, ctx = _context(batch_norm=False, steps_before=4)
    result = jax.jit(DistanceProbe().measure)(ctx)
    total = 0.0
    for name, path in zip(spec.weight_layer_names, spec.kernel_paths):
        delta = np.asarray(state_at(ctx.state.params, path)) - np.asarray(state_at(ctx.setup["distance"], path))
        assert float(result[name]) == pytest.approx(np.linalg.norm(delta.ravel()), rel=1e-5)
        total += np.sum(delta**2)
    assert float(result["total"]) == pytest.approx(np.sqrt(total), rel=1e-5)
    assert float(result["total"]) > 0


def test_schedules_are_checked_in_python():
    probes = (DistanceProbe(schedule=every(4)), GradientsProbe(schedule=at_steps(0, 3)))
    assert [p.name for p in active_probes(probes, 0)] == ["distance", "gradients"]
    assert [p.name for p in active_probes(probes, 3)] == ["gradients"]
    assert active_probes(probes, 5) == ()
    assert every(4, start=2)(6) and not every(4, start=2)(2 - 4)


def test_bad_bn_mode_is_refused():
    with pytest.raises(ValueError, match="bn_mode"):
        ActivationsProbe(bn_mode="running")


def test_symmetric_log_histogram_matches_numpy_on_edges_zeros_and_tails():
    from normlab.probes.gradients import symmetric_log_histogram

    edges = gradient_edges()
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(size=5000) * 1e-3,
        rng.standard_cauchy(size=5000) * 1e-2,  # heavy tails, some beyond the last edge
        edges, -edges, edges * (1 + 1e-7), edges * (1 - 1e-7),  # on and next to every edge
        [0.0, -0.0, 1e-12, -1e-12, 20.0, -20.0, np.nan],
    ]).astype(np.float32)
    counts = np.asarray(jax.jit(symmetric_log_histogram)(jnp.asarray(values)))
    # NumPy on the same float32 edges the data can represent; NaN is not counted
    expected = np.histogram(values[~np.isnan(values)], bins=edges.astype(np.float32))[0]
    np.testing.assert_array_equal(counts, expected)


def _bin_by_hand(value: float, edges: np.ndarray) -> int | None:
    """The bin of ``value`` by definition: [e_i, e_i+1) for all but the last, which is closed."""
    if value < edges[0] or value > edges[-1]:
        return None
    for i in range(len(edges) - 2):
        if edges[i] <= value < edges[i + 1]:
            return i
    return len(edges) - 2


def test_activation_histogram_boundaries_at_every_edge_and_just_beside_it():
    spec, ctx = _context()
    probe = ActivationsProbe(bins=4, value_range=2.0)
    edges = np.linspace(-2, 2, 5).astype(np.float32)  # -2, -1, 0, 1, 2: exact in float32
    nonzero = edges[edges != 0]  # next to 0 the neighbours are denormals, which XLA flushes to 0
    tiny = np.finfo(np.float32).tiny
    beside = np.concatenate([np.nextafter(nonzero, np.float32(-np.inf)), np.nextafter(nonzero, np.float32(np.inf)),
                             [-tiny, tiny]])
    values = np.concatenate([edges, beside, [-2.5, 2.5, -7.0, 0.5]]).astype(np.float32)
    layers = tuple(jnp.asarray(values.reshape(-1, 1) * scale) for scale in (1, -1))
    result = jax.jit(probe.measure)(ctx._replace(activations=layers))
    for name, layer in zip(spec.activation_names, layers):
        bins = [_bin_by_hand(float(v), edges) for v in np.asarray(layer).ravel()]
        want = np.bincount([b for b in bins if b is not None], minlength=4)
        np.testing.assert_array_equal(result[f"{name}.hist"], want)
        assert result[f"{name}.hist"].dtype == result[f"{name}.outside"].dtype == jnp.int32  # counts, stored exact
        # exactly +-2 is inside; outside: the next floats beyond +-2, -2.5, 2.5 and -7 (or 7)
        assert int(result[f"{name}.outside"]) == bins.count(None) == 5
        assert want.sum() + 5 == values.size
