"""Train steps against plain references: the optimizer update, divergence masking, capture."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from normlab.train import make_network, make_optimizer, state_at, train_step
from reference_models import TinyMLP


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, 4)), jnp.float32), jnp.asarray(rng.integers(0, 3, n), jnp.int32)


def _network(batch_norm=False, optimizer="sgd", lr=0.1):
    tx, schedule = make_optimizer(optimizer, lr, total_steps=10)
    return make_network("net", TinyMLP(batch_norm=batch_norm, rngs=nnx.Rngs(0)), tx, schedule)


def _reference_loss(model, x, y):
    logits = model(x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.mark.parametrize("batch_norm", [False, True])
def test_sgd_step_matches_a_plain_gradient_update(batch_norm):
    spec, state = _network(batch_norm)
    x, y = _batch()
    reference = TinyMLP(batch_norm=batch_norm, rngs=nnx.Rngs(0))
    grads = nnx.grad(_reference_loss)(reference, x, y)
    new_state, outputs = jax.jit(lambda s, x, y: train_step(spec, s, x, y))(state, x, y)
    for path in spec.kernel_paths:
        before = state_at(nnx.state(reference, nnx.Param), path)
        grad = state_at(grads, path)
        np.testing.assert_allclose(state_at(new_state.params, path), before - 0.1 * grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state_at(outputs.grads, path), grad, rtol=1e-5, atol=1e-7)
    assert float(outputs.loss) == pytest.approx(
        float(_reference_loss(TinyMLP(batch_norm=batch_norm, rngs=nnx.Rngs(0)), x, y)), rel=1e-6
    )


def test_batch_norm_running_stats_advance_and_activations_are_captured():
    spec, state = _network(batch_norm=True)
    x, y = _batch()
    new_state, outputs = train_step(spec, state, x, y)
    before = jax.tree.leaves(state.rest)
    after = jax.tree.leaves(new_state.rest)
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "BN running statistics did not move"
    assert [a.shape for a in outputs.intermediates] == [(8, 6), (8, 5)]
    # BN output in train mode: per-feature batch mean 0 (gamma 1, beta 0 at init).
    np.testing.assert_allclose(np.mean(outputs.intermediates[0], axis=0), 0.0, atol=1e-5)


def test_a_non_finite_loss_freezes_the_network_and_reports_nan():
    spec, state = _network()
    x, y = _batch()
    bad_x = x.at[0, 0].set(jnp.inf)
    dead_state, outputs = train_step(spec, state, bad_x, y)
    assert not bool(dead_state.alive)
    assert np.isnan(float(outputs.loss))
    for new, old in zip(jax.tree.leaves(dead_state.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(new, old)
    # Once dead it stays dead, even on a good batch.
    later_state, later = train_step(spec, dead_state, x, y)
    assert not bool(later_state.alive) and np.isnan(float(later.loss))


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizers_match_optax_directly(name):
    spec, state = _network(optimizer=name, lr=0.01)
    x, y = _batch()
    expected = {"sgd": optax.sgd(0.01), "momentum": optax.sgd(0.01, momentum=0.9), "adam": optax.adam(0.01)}[name]
    params = state.params
    opt_state = expected.init(params)
    for _ in range(3):
        _, grads = nnx.value_and_grad(_reference_loss)(nnx.merge(spec.graphdef, params, state.rest), x, y)
        updates, opt_state = expected.update(nnx.state(grads, nnx.Param), opt_state, params)
        params = optax.apply_updates(params, updates)
        state, _ = train_step(spec, state, x, y)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_learning_rate_schedules():
    _, constant = make_optimizer("sgd", 0.1, total_steps=100)
    _, step = make_optimizer("sgd", 0.1, total_steps=100, schedule="step")
    _, cosine = make_optimizer("sgd", 0.1, total_steps=100, schedule="cosine")
    assert float(constant(99)) == pytest.approx(0.1)
    assert [float(step(s)) for s in (0, 49, 50, 74, 75)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0, abs=1e-8)


def test_a_model_without_weight_layers_is_refused_with_a_hint():
    class NoContract(nnx.Module):
        def __init__(self):
            self.dense = nnx.Linear(2, 2, rngs=nnx.Rngs(0))

        def __call__(self, x, *, train):
            return self.dense(x)

    tx, schedule = make_optimizer("sgd", 0.1, total_steps=1)
    with pytest.raises(TypeError, match="weight_layers"):
        make_network("x", NoContract(), tx, schedule)


def test_regression_loss_is_a_per_sample_mean_and_the_step_equals_s18s_summed_loss_at_lr_over_n():
    """The DLN's training loss is (1/n) sum_i ||f(x_i) - y_i||^2, the evaluation's reduction too;
    plain GD on it with lr 1e-3 makes S18's step on the summed loss with lr 1e-6 (n = 1000)."""
    from normlab.models import build_model
    from normlab.train import evaluate_batch

    rng = np.random.default_rng(5)
    n = 1000
    x = rng.standard_normal((n, 10)).astype(np.float32)
    y = (x @ rng.standard_normal((10, 10)).T).astype(np.float32)
    model = build_model("dln", input_shape=(10,), num_classes=0, depth=3, rngs=nnx.Rngs(0))
    tx, schedule = make_optimizer("sgd", 1e-3, total_steps=10)
    spec, state = make_network("dln", model, tx, schedule, task="regression")
    new_state, outputs = jax.jit(lambda s, x, y: train_step(spec, s, x, y))(state, jnp.asarray(x), jnp.asarray(y))

    k1, k2, k3 = (np.asarray(state_at(state.params, path), np.float64) for path in spec.kernel_paths)
    h1, h2 = x @ k1, x @ k1 @ k2  # Dense: inputs @ kernel
    residual = h2 @ k3 - y
    assert float(outputs.loss) == pytest.approx(np.sum(residual**2) / n, rel=1e-5)
    summed_grads = (2 * x.T @ (residual @ k3.T @ k2.T), 2 * h1.T @ (residual @ k3.T), 2 * h2.T @ residual)
    for path, kernel, grad in zip(spec.kernel_paths, (k1, k2, k3), summed_grads):
        np.testing.assert_allclose(state_at(new_state.params, path), kernel - 1e-6 * grad, rtol=1e-4, atol=1e-6)
    mask = jnp.ones(n)
    summed, _ = evaluate_batch(spec, state, jnp.asarray(x), jnp.asarray(y), mask)
    assert float(summed) / n == pytest.approx(float(outputs.loss), rel=1e-5)  # same reduction in evaluation
