"""The pieces of a network's spec that probes and reports rely on, against hand-built answers:
the norms' gamma/beta found in a state, the weight layers' names, accuracy, the optimizers'
weight decay and the compilation-cache switch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from normlab.train import NormParameter, make_network, make_optimizer, training_loss_reduction
from normlab.train.compile_cache import active_compile_cache_dir, configure_compile_cache
from normlab.train.steps import loss_and_accuracy, norm_parameters
from reference_models import TinyMLP


def _leaf():
    return jnp.zeros(2)


def test_norm_parameters_are_every_scale_and_bias_no_weight_layer_owns_named_by_layer():
    kernel_paths = (("hidden", 0, "linear", "kernel"), ("head", "kernel"))
    params = {
        "hidden": {0: {"linear": {"kernel": _leaf(), "bias": _leaf()},  # a weight layer's own bias
                       "norm": {"scale": {"value": _leaf()}, "bias": _leaf(), "mean": _leaf()}},
                   5: {"norm": {"scale": _leaf()}}},  # beyond activation_names: named by its path
        "head": {"kernel": _leaf(), "bias": _leaf()},
        "extra": {"norm": {"bias": _leaf()}},  # outside ``hidden``: named by its path
    }
    rest = {"hidden": {1: {"norm": {"scale": _leaf(), "var": _leaf()}}}}  # a frozen gamma
    found = norm_parameters(kernel_paths, params, rest, activation_names=("dense0", "dense1"))
    assert set(found) == {
        NormParameter("dense0", "scale", "params", ("hidden", 0, "norm", "scale")),
        NormParameter("dense0", "bias", "params", ("hidden", 0, "norm", "bias")),
        NormParameter("hidden.5.norm", "scale", "params", ("hidden", 5, "norm", "scale")),
        NormParameter("extra.norm", "bias", "params", ("extra", "norm", "bias")),
        NormParameter("dense1", "scale", "rest", ("hidden", 1, "norm", "scale")),
    }
    assert len(found) == 5


def _network(batch_norm=True, optimizer="sgd", weight_decay=0.0, model=None):
    tx, schedule = make_optimizer(optimizer, 0.1, total_steps=10, weight_decay=weight_decay)
    return make_network("net", model or TinyMLP(batch_norm=batch_norm, rngs=nnx.Rngs(0)), tx, schedule)


def test_a_models_own_layer_names_name_its_weight_layers_else_their_module_paths():
    spec, _ = _network()
    class Named(TinyMLP):
        weight_layer_names = ("first", "second", "logits")

    named, _ = _network(model=Named(batch_norm=False, rngs=nnx.Rngs(0)))
    assert named.weight_layer_names == ("first", "second", "logits")
    assert spec.weight_layer_names == ("dense0", "dense1", "dense2")  # TinyMLP names none: module paths


def test_accuracy_is_the_fraction_of_argmax_hits_and_the_loss_their_mean_cross_entropy():
    spec, _ = _network()
    logits = jnp.asarray([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    targets = jnp.asarray([0, 1, 2, 2])  # three of four argmax hits
    loss, accuracy = loss_and_accuracy(spec, logits, targets)
    assert float(accuracy) == pytest.approx(0.75)
    log_softmax = np.asarray(jax.nn.log_softmax(logits))
    assert training_loss_reduction(spec) == "mean"
    assert float(loss) == pytest.approx(-np.mean(log_softmax[np.arange(4), np.asarray(targets)]), rel=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_is_optaxs_decoupled_decay_for_adam_and_added_to_the_gradient_otherwise(name):
    decay = 0.05
    tx, _ = make_optimizer(name, 0.1, total_steps=10, weight_decay=decay)
    params = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    # The first entry's decay term (0.05 * 1) outweighs and flips its gradient (-0.01): Adam's first
    # step, sign-like, then tells decay added to the gradient from decoupled decay.
    grads = {"w": jnp.asarray([-0.01, 0.5, -1.0])}
    expected_tx = optax.adamw(0.1, weight_decay=decay) if name == "adam" else optax.sgd(0.1)
    expected_grads = grads if name == "adam" else {"w": grads["w"] + decay * params["w"]}
    updates, _ = tx.update(grads, tx.init(params), params)
    expected, _ = expected_tx.update(expected_grads, expected_tx.init(params), params)
    np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)


def test_the_compilation_cache_is_off_for_none_and_on_for_a_directory(tmp_path):
    before = active_compile_cache_dir()
    try:
        assert configure_compile_cache(tmp_path) == tmp_path
        assert active_compile_cache_dir() == str(tmp_path)
        assert configure_compile_cache(None) is None
        assert active_compile_cache_dir() is None
    finally:
        configure_compile_cache(None if before is None else before)
