"""Every deterministic norm against its plain NumPy formula: train and eval, dense and conv.

Each case trains the norm for three batches (updating its running statistics), checks the output
of the last training call, then checks an eval call against the formula with running averages
simulated in NumPy. gamma and beta are set to random values first, so the affine step is tested.
"""

from __future__ import annotations

import jax.numpy as jnp
import norms_numpy_reference as ref
import numpy as np
import pytest
from flax import nnx

from normlab.norms import make_norm, norm_names, norm_options

EPS = 1e-5
MOMENTUM = 0.7  # far from 1 so three updates move the running averages visibly
SHAPES = {"dense": (16, 6), "conv": (4, 3, 3, 6)}
DETERMINISTIC = [n for n in norm_names() if n != "noisy"]  # noisy: tests/norms/test_norms_noisy.py


def make_batches(shape, count=3, seed=0):
    rng = np.random.default_rng(seed)
    # off-centre and wide, so mean removal and scaling both matter
    return [rng.normal(1.5, 2.0, shape).astype(np.float32) for _ in range(count)]


def randomize_affine(module, seed=1):
    """Set trainable gamma/beta to random values; return (gamma, beta) as used by the module."""
    rng = np.random.default_rng(seed)
    c = module.num_features
    out = []
    for name, default in (("scale", 1.0), ("bias", 0.0)):
        variable = getattr(module, name, None)
        if isinstance(variable, nnx.Param):
            variable[...] = jnp.asarray(rng.normal(default, 0.5, c), jnp.float32)
            out.append(np.asarray(variable[...], np.float64))
        elif variable is not None:  # frozen: must still hold its init
            out.append(np.asarray(variable[...], np.float64))
        else:
            out.append(np.full(c, default))
    return out


def options_for(name):
    allowed = norm_options(name)
    options = {"momentum": MOMENTUM} if "momentum" in allowed else {}
    if name == "group":
        options["num_groups"] = 3
    return options


def expected(name, batches, x_eval, gamma, beta):
    """(last training output, eval output) by the NumPy reference."""
    last = batches[-1]
    mean_b, var_b = ref.batch_mean_var(last)
    run_mean = ref.flax_running(batches, momentum=MOMENTUM, stat=ref.mean_of, init=0.0)
    run_var = ref.flax_running(batches, momentum=MOMENTUM, stat=ref.var_biased, init=1.0)
    if name == "none":
        return last, x_eval
    if name in ("batch", "no_affine", "frozen_gamma", "frozen_beta"):
        return (ref.bn(last, mean_b, var_b, gamma, beta, EPS),
                ref.bn(x_eval, run_mean, run_var, gamma, beta, EPS))
    if name in ("l1", "l2", "linf"):
        p = name[1:]
        run_div = ref.flax_running(batches, momentum=MOMENTUM,
                                   stat=lambda b: ref.lp_divisor(b, p), init=1.0)
        train = gamma * (last - mean_b) / (ref.lp_divisor(last, p) + EPS) + beta
        return train, gamma * (x_eval - run_mean) / (run_div + EPS) + beta
    if name == "mean_only":
        return gamma * (last - mean_b) + beta, gamma * (x_eval - run_mean) + beta
    if name == "var_only":
        return (gamma * last / np.sqrt(var_b + EPS) + beta,
                gamma * x_eval / np.sqrt(run_var + EPS) + beta)
    if name == "layer":
        return ref.layer_norm(last, gamma, beta, EPS), ref.layer_norm(x_eval, gamma, beta, EPS)
    if name == "group":
        return (ref.group_norm(last, 3, gamma, beta, EPS),
                ref.group_norm(x_eval, 3, gamma, beta, EPS))
    if name == "rms":
        return ref.rms_norm(last, gamma, EPS), ref.rms_norm(x_eval, gamma, EPS)
    if name == "zca":
        run_cov = ref.flax_running(batches, momentum=MOMENTUM, stat=ref.covariance,
                                   init=np.eye(last.shape[-1]))
        return (ref.zca(last, mean_b, ref.covariance(last), gamma, beta, EPS),
                ref.zca(x_eval, run_mean, run_cov, gamma, beta, EPS))
    if name == "pit":
        return ref.pit(last, gamma, beta), ref.bn(x_eval, run_mean, run_var, gamma, beta, EPS)
    raise AssertionError(f"no reference for {name}")


@pytest.mark.parametrize("layout", list(SHAPES))
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_norm_matches_numpy_reference(name, layout):
    shape = SHAPES[layout]
    norm = make_norm(name, shape[-1], rngs=nnx.Rngs(params=0), **options_for(name))
    gamma, beta = randomize_affine(norm)
    batches = make_batches(shape)
    x_eval = make_batches(shape, count=1, seed=7)[0]

    for b in batches:
        y_train = norm(jnp.asarray(b), train=True)
    # np.array copies: nnx.state aliases the live variables, so a bare state would change with them
    state_before_eval = {path: np.array(value[...]) for path, value in nnx.to_flat_state(nnx.state(norm))}
    y_eval = norm(jnp.asarray(x_eval), train=False)

    want_train, want_eval = expected(name, batches, x_eval, gamma, beta)
    np.testing.assert_allclose(np.asarray(y_train), want_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y_eval), want_eval, rtol=1e-5, atol=1e-5)
    # eval mode changes no state
    state_after_eval = dict(nnx.to_flat_state(nnx.state(norm)))
    assert state_after_eval.keys() == state_before_eval.keys()
    for path, before in state_before_eval.items():
        np.testing.assert_array_equal(before, np.asarray(state_after_eval[path][...]), str(path))


def test_group_norm_clips_groups_to_a_divisor():
    def groups(c, requested=None):
        options = {} if requested is None else {"num_groups": requested}
        return make_norm("group", c, rngs=nnx.Rngs(params=0), **options).num_groups

    assert groups(64) == 32
    assert groups(6) == 6  # 32 requested, C = 6: one channel per group
    assert groups(48) == 24
    assert groups(6, 4) == 3
    assert groups(7, 3) == 1
    x = make_batches((2, 2, 2, 6), count=1)[0]
    norm = make_norm("group", 6, rngs=nnx.Rngs(params=0))
    ones, zeros = np.ones(6), np.zeros(6)
    np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x), train=True)),
                               ref.group_norm(x, 6, ones, zeros, EPS), rtol=1e-5, atol=1e-5)


def test_layer_norm_on_conv_input_reduces_over_height_width_and_channels():
    x = make_batches((3, 2, 2, 4), count=1)[0]
    y = np.asarray(make_norm("layer", 4, rngs=nnx.Rngs(params=0))(jnp.asarray(x), train=True))
    np.testing.assert_allclose(y.reshape(3, -1).mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.reshape(3, -1).var(axis=1), 1.0, rtol=1e-4)
