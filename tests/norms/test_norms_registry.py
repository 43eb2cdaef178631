"""One sweep over every registered norm, plus the contracts the other stages rely on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from normlab.errors import NormlabError, UnknownNameError
from normlab.norms import NORMS, FrozenParam, make_norm, norm_names, norm_options

ALL = norm_names()
SHAPES = {"dense": (6, 4), "conv": (2, 3, 3, 4)}


def rngs():
    return nnx.Rngs(params=0, noise=1)


def as_numpy(value):
    """Array of a state leaf; rng keys as their raw key data."""
    if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)


def inputs(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(0.5, 1.5, shape).astype(np.float32))


def test_registry_lists_every_required_norm():
    required = {"none", "batch", "noisy", "l1", "l2", "linf", "mean_only", "var_only", "no_affine",
                "frozen_gamma", "frozen_beta", "layer", "group", "rms"}
    assert required <= set(NORMS)
    assert ALL[:2] == ["none", "batch"]
    assert all(isinstance(d, str) and d and "\n" not in d for d in NORMS.values())


@pytest.mark.parametrize("layout", list(SHAPES))
@pytest.mark.parametrize("name", ALL)
def test_shape_jit_and_eager_agree(name, layout):
    shape = SHAPES[layout]
    x = inputs(shape)
    eager = make_norm(name, 4, rngs=rngs())
    jitted = make_norm(name, 4, rngs=rngs())
    graphdef, state = nnx.split(jitted)

    @jax.jit
    def step(state, x):
        module = nnx.merge(graphdef, state, copy=True)
        return module(x, train=True), module(x, train=False), nnx.state(module)

    y_train, y_eval, new_state = step(state, x)
    assert y_train.shape == y_eval.shape == shape
    np.testing.assert_allclose(np.asarray(y_train), np.asarray(eager(x, train=True)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y_eval), np.asarray(eager(x, train=False)),
                               rtol=1e-5, atol=1e-5)
    for (_, a), (_, b) in zip(nnx.to_flat_state(new_state), nnx.to_flat_state(nnx.state(eager))):
        np.testing.assert_allclose(as_numpy(a[...]), as_numpy(b[...]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_train_is_a_required_keyword(name):
    norm, x = make_norm(name, 4, rngs=rngs()), inputs((6, 4))
    with pytest.raises(TypeError):
        norm(x)
    with pytest.raises(TypeError):
        norm(x, True)
    with pytest.raises(NormlabError, match="train must be a Python bool"):
        norm(x, train="yes")
    with pytest.raises(NormlabError, match="features last"):
        norm(inputs((6, 5)), train=True)


@pytest.mark.parametrize("name", ALL)
def test_norm_draws_nothing_from_the_params_stream(name):
    shared = rngs()
    make_norm(name, 4, rngs=shared)
    after_norm = nnx.Linear(4, 4, rngs=shared)
    alone = nnx.Linear(4, 4, rngs=rngs())
    np.testing.assert_array_equal(np.asarray(after_norm.kernel[...]), np.asarray(alone.kernel[...]))


@pytest.mark.parametrize("name", ALL)
def test_gradients_are_finite_in_train_mode(name):
    norm = make_norm(name, 4, rngs=rngs())
    x = inputs((2, 3, 3, 4)).at[..., 1].set(0.0)  # a dead unit, as ReLU layers produce
    graphdef, params, rest = nnx.split(norm, nnx.Param, ...)

    def loss(params, x):
        module = nnx.merge(graphdef, params, rest, copy=True)
        return jnp.sum(jnp.sin(module(x, train=True)))

    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
    for leaf in jax.tree.leaves(g_params) + [g_x]:
        assert np.all(np.isfinite(np.asarray(leaf))), name


def test_variables_have_the_contract_names_and_types():
    bn = make_norm("batch", 4, rngs=rngs())
    assert isinstance(bn.scale, nnx.Param) and isinstance(bn.bias, nnx.Param)
    assert isinstance(bn.mean, nnx.BatchStat) and isinstance(bn.var, nnx.BatchStat)
    np.testing.assert_array_equal(np.asarray(bn.scale[...]), 1.0)
    np.testing.assert_array_equal(np.asarray(bn.bias[...]), 0.0)
    np.testing.assert_array_equal(np.asarray(bn.mean[...]), 0.0)
    np.testing.assert_array_equal(np.asarray(bn.var[...]), 1.0)
    assert nnx.state(make_norm("none", 4, rngs=rngs())) == nnx.State({})
    assert not jax.tree.leaves(nnx.state(make_norm("no_affine", 4, rngs=rngs()), nnx.Param))


@pytest.mark.parametrize("name, frozen, trained", [("frozen_gamma", "scale", "bias"),
                                                   ("frozen_beta", "bias", "scale")])
def test_frozen_affine_is_not_a_param_and_the_optimizer_leaves_it(name, frozen, trained):
    norm = make_norm(name, 4, rngs=rngs())
    assert isinstance(getattr(norm, frozen), FrozenParam)
    assert not isinstance(getattr(norm, frozen), nnx.Param)
    assert set(nnx.state(norm, nnx.Param).keys()) == {trained}
    init = np.asarray(getattr(norm, frozen)[...]).copy()
    optimizer = nnx.Optimizer(norm, optax.sgd(0.5), wrt=nnx.Param)
    x = inputs((6, 4))
    target = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)
    for _ in range(3):
        grads = nnx.grad(lambda m: jnp.mean((m(x, train=True) - target) ** 2))(norm)
        optimizer.update(norm, grads)
    np.testing.assert_array_equal(np.asarray(getattr(norm, frozen)[...]), init)
    trained_init = 1.0 if trained == "scale" else 0.0
    assert not np.allclose(np.asarray(getattr(norm, trained)[...]), trained_init)


def test_unknown_name_and_option_errors():
    with pytest.raises(UnknownNameError, match="unknown norm 'bn'; valid: .*batch"):
        make_norm("bn", 4, rngs=rngs())
    with pytest.raises(
        UnknownNameError, match="unknown norm 'batch' option 'momentun'; valid: momentum, eps, running_var$"
    ):
        make_norm("batch", 4, rngs=rngs(), momentun=0.9)
    with pytest.raises(UnknownNameError, match=r"valid: \(none\)"):
        make_norm("none", 4, rngs=rngs(), eps=1e-3)
    with pytest.raises(NormlabError, match="num_features"):
        make_norm("batch", 0, rngs=rngs())


def test_documented_options():
    assert norm_options("batch") == {"momentum": 0.99, "eps": 1e-5, "running_var": "biased"}
    assert norm_options("noisy") == {
        "momentum": 0.99, "eps": 1e-5, "running_var": "biased", "n_mu": 0.5, "n_sigma": 1.25,
        "r_mu": 0.1, "r_sigma": 0.1, "noise_position": "after_affine"}
    assert norm_options("group") == {"num_groups": 32, "eps": 1e-5}


def test_pit_gradient_is_batchnorms_or_zero():
    x = inputs((8, 3))
    probe = jnp.asarray(np.random.default_rng(2).normal(size=(8, 3)), jnp.float32)

    def grad_x(name, **options):
        graphdef, state = nnx.split(make_norm(name, 3, rngs=rngs(), **options))

        def loss(x):  # merge inside: the train call writes running stats under the grad trace
            return jnp.sum(nnx.merge(graphdef, state, copy=True)(x, train=True) * probe)

        return np.asarray(jax.grad(loss)(x))

    np.testing.assert_allclose(grad_x("pit"), grad_x("batch"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grad_x("pit", gradient="none"), 0.0)


def test_zca_whitens_the_batch():
    x = inputs((64, 4))
    y = np.asarray(make_norm("zca", 4, rngs=rngs(), eps=1e-6)(x, train=True), np.float64)
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(4), atol=1e-3)
