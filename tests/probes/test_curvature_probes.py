"""The curvature probes against dense Hessians (``jax.hessian`` of the flattened loss) and closed forms.

Float64 throughout (``jax.enable_x64`` in this module only), so 1e-5 relative checks the
algorithm -- BN mode, which parameters, reorthogonalization -- and not float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from santurkar_reference import Block

from normlab.probes import ProbeContext, SharedPieces, make_probe
from normlab.probes import lanczos as la
from normlab.probes.curvature import (
    GradientConcentrationProbe,
    HessianDensityProbe,
    HessianTopProbe,
    HessianTraceProbe,
    layer_blocks,
    shared_curvature,
)
from normlab.probes.shared import mode_loss
from normlab.train import make_network, make_optimizer, train_step

RTOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def float64():
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------------ closed forms


def _symmetric(eigenvalues, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T


EIGENVALUES = np.array([7.0, 3.0, 3.0, 1.0, 0.5, 0.0, 0.0, -0.25, -2.0, 2.0, 2.0, 2.0])


def test_full_lanczos_recovers_every_eigenvalue_of_a_quadratic_even_with_repeats():
    """L = theta^T A theta / 2 has Hessian A; repeated eigenvalues force breakdowns and restarts."""
    a = jnp.asarray(_symmetric(EIGENVALUES))
    hvp = jax.grad(lambda t: 0.5 * t @ a @ t)  # grad of the quadratic is A t: its HVP is A v
    v0 = jnp.asarray(np.random.default_rng(1).normal(size=len(EIGENVALUES)))
    run = jax.jit(lambda v: la.lanczos(lambda u: jax.jvp(hvp, (jnp.zeros_like(u),), (u,))[1], v, len(v)))(v0)
    np.testing.assert_allclose(run.basis @ run.basis.T, np.eye(len(v0)), atol=1e-10)
    pairs = la.ritz_pairs(run)
    np.testing.assert_allclose(np.sort(pairs.values), np.sort(EIGENVALUES), atol=1e-10)
    values, residuals, vectors = la.top_ritz(run, 3)
    np.testing.assert_allclose(values, [7.0, 3.0, 3.0], rtol=1e-10)
    explicit = np.linalg.norm(vectors @ np.asarray(a) - values[:, None] * vectors, axis=1)
    np.testing.assert_allclose(residuals, explicit, atol=1e-9)


def test_partial_lanczos_residual_is_the_explicit_residual():
    a = jnp.asarray(_symmetric(np.concatenate([[50.0, 20.0], np.linspace(-1.0, 1.0, 38)])))  # two outliers
    run = jax.jit(lambda a: la.lanczos(lambda v: a @ v, jnp.ones(40), 8))(a)
    values, residuals, vectors = la.top_ritz(run, 2)
    explicit = np.linalg.norm(vectors @ np.asarray(a) - np.asarray(values)[:, None] * vectors, axis=1)
    np.testing.assert_allclose(residuals, explicit, rtol=1e-6, atol=1e-10)
    assert residuals[0] < 1e-2 * values[0]  # the top pair converges first


def test_hutchinson_is_exact_for_a_diagonal_hessian_and_unbiased_otherwise():
    diagonal = jnp.asarray(np.diag(EIGENVALUES))
    trace, stderr, samples = la.hutchinson(lambda v: diagonal @ v, jax.random.key(0), 5, 12, jnp.float64)
    np.testing.assert_allclose(samples, EIGENVALUES.sum(), rtol=1e-12)  # z_i^2 = 1: no variance at all
    assert stderr == 0
    a = jnp.asarray(_symmetric(EIGENVALUES))
    trace, stderr, samples = la.hutchinson(lambda v: a @ v, jax.random.key(1), 200, 12, jnp.float64)
    assert abs(trace - EIGENVALUES.sum()) < 4 * stderr
    np.testing.assert_allclose(stderr, np.std(samples, ddof=1) / np.sqrt(200), rtol=1e-12)


def test_power_iteration_finds_the_largest_magnitude_eigenvalues():
    a = jnp.asarray(_symmetric(np.array([9.0, -6.0, 2.0, 1.0, 0.5, 0.1])))
    values, residuals, _ = la.power_iteration(lambda v: a @ v, jnp.ones(6), 2, 300)
    np.testing.assert_allclose(values, [9.0, -6.0], rtol=1e-8)
    assert np.all(residuals < 1e-6)


def test_slq_moments_and_density_integral():
    """With m steps the quadrature is exact for polynomials of degree < 2m: v^T A^p v for p <= 3."""
    a = np.asarray(_symmetric(EIGENVALUES))
    key = jax.random.key(3)
    nodes, weights = jax.jit(lambda a, key: la.slq(lambda v: a @ v, key, 3, 2, 12, jnp.float64))(jnp.asarray(a), key)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    for start in range(3):
        v = np.array(jax.random.normal(jax.random.fold_in(key, start), (12,), jnp.float64))
        v = v / np.linalg.norm(v)
        for power in range(4):
            np.testing.assert_allclose(np.sum(weights[start] * nodes[start] ** power),
                                       v @ np.linalg.matrix_power(a, power) @ v, rtol=1e-9, atol=1e-12)
    grid = np.linspace(-10, 15, 4001)
    density = la.smoothed_density(nodes, weights, grid, 0.3)
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, rtol=1e-6)


# ------------------------------------------------------------------------ tiny networks
# A few dozen parameters each (the dense Hessian is trivial), two weight layers (so the per-layer
# blocks are tested), built and trained once per module and shared by every test below.


class TinyMLP(nnx.Module):
    """3 -> 4 -> 3, ReLU, optional BN after the hidden Dense: 31 parameters (39 with BN)."""

    def __init__(self, *, batch_norm: bool, rngs: nnx.Rngs):
        self.block = Block(nnx.Linear(3, 4, rngs=rngs), 4, batch_norm=batch_norm, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    @property
    def weight_layers(self):
        return [self.block.linear, self.head]

    def __call__(self, x, *, train: bool):
        return self.head(self.block(x, train=train))


class TinyConvNet(nnx.Module):
    """4x4x1 images: conv 3x3 (1->2), 2x2 average pool, Dense to 3 classes: 47 parameters (51 with BN)."""

    def __init__(self, *, batch_norm: bool, rngs: nnx.Rngs):
        self.block = Block(nnx.Conv(1, 2, (3, 3), padding="SAME", rngs=rngs), 2, batch_norm=batch_norm, rngs=rngs)
        self.head = nnx.Linear(2 * 2 * 2, 3, rngs=rngs)

    @property
    def weight_layers(self):
        return [self.block.linear, self.head]

    def __call__(self, x, *, train: bool):
        x = nnx.avg_pool(self.block(x, train=train), window_shape=(2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def _to64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _build_context(kind: str, batch_norm: bool):
    """A tiny network after a few SGD steps (non-trivial running statistics), in float64.
    ``shared`` is None: each jitted measurement below makes its own ``SharedPieces`` in the trace."""
    model = (TinyMLP if kind == "mlp" else TinyConvNet)(batch_norm=batch_norm, rngs=nnx.Rngs(0))
    tx, schedule = make_optimizer("sgd", 0.05, total_steps=100)
    spec, state = make_network("net", model, tx, schedule)
    params = _to64(state.params)
    state = state._replace(params=params, rest=_to64(state.rest), opt_state=tx.init(params))
    rng = np.random.default_rng(1)
    shape = (10, 3) if kind == "mlp" else (10, 4, 4, 1)
    step_fn = jax.jit(lambda s, x, y: train_step(spec, s, x, y))
    for _ in range(3):
        x, y = jnp.asarray(rng.normal(size=shape) * 2 + 0.5), jnp.asarray(rng.integers(0, 3, 10), jnp.int32)
        state, outputs = step_fn(state, x, y)
    x, y = jnp.asarray(rng.normal(size=shape) * 2 + 0.5), jnp.asarray(rng.integers(0, 3, 10), jnp.int32)
    _, outputs = step_fn(state, x, y)
    ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=outputs.loss, grads=outputs.grads,
                       activations=outputs.intermediates, learning_rate=jnp.asarray(0.05), step=jnp.asarray(3))
    return spec, ctx


@pytest.fixture(scope="module")
def contexts():
    """``(kind, batch_norm) -> (spec, ctx)``, each built (and its train step compiled) once."""
    cache = {}

    def get(kind: str, batch_norm: bool):
        if (kind, batch_norm) not in cache:
            cache[kind, batch_norm] = _build_context(kind, batch_norm)
        return cache[kind, batch_norm]

    return get


def _measure(probes, ctx):
    """Every probe of ``probes`` on ``ctx`` in one jitted step sharing one ``SharedPieces``, as the
    group step does."""

    def measure(c):
        c = c._replace(shared=SharedPieces())
        return {p.name: p.measure(c) for p in probes}

    return jax.jit(measure)(ctx)


def _dense(spec, ctx, train: bool):
    """The dense Hessian of the flattened loss and the flat gradient: the slow, obvious reference."""
    theta, unravel = ravel_pytree(ctx.state.params)

    def loss(t):
        return mode_loss(spec, unravel(t), ctx.state.rest, ctx.x, ctx.y, train=train)

    hessian, gradient = jax.jit(lambda t: (jax.hessian(loss)(t), jax.grad(loss)(t)))(theta)
    return np.asarray(hessian), np.asarray(gradient)


# (model, BN, probe BN mode, per-layer): every model with and without BN, the BN MLP in both modes
# (the train/eval test reads these), the per-layer blocks once, to keep compile time down
NETS = [("mlp", False, "train", False), ("mlp", True, "eval", True), ("mlp", True, "train", False),
        ("conv", False, "train", False), ("conv", True, "train", False)]


@pytest.fixture(scope="module")
def measured(contexts):
    """``(kind, batch_norm, mode, per_layer) -> (spec, ctx, dense Hessian, dense gradient, outputs)``:
    the four probes at full Lanczos (m = n) in one jitted step, and the dense reference, each once."""
    cache = {}

    def get(kind, batch_norm, mode, per_layer):
        key = (kind, batch_norm, mode, per_layer)
        if key not in cache:
            spec, ctx = contexts(kind, batch_norm)
            hessian, gradient = _dense(spec, ctx, train=mode == "train")
            common = dict(lanczos_steps=hessian.shape[0], bn_mode=mode)
            probes = (HessianTopProbe(k=3, per_layer=per_layer, **common), GradientConcentrationProbe(k=3, **common),
                      HessianDensityProbe(starts=2, **common),
                      HessianTraceProbe(vectors=24, per_layer=per_layer, **common))
            cache[key] = (spec, ctx, hessian, gradient, _measure(probes, ctx))
        return cache[key]

    return get


@pytest.mark.parametrize("kind,batch_norm,mode,per_layer", NETS)
def test_probes_match_the_dense_hessian(measured, kind, batch_norm, mode, per_layer):
    spec, ctx, hessian, gradient, result = measured(kind, batch_norm, mode, per_layer)
    n = hessian.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)

    top = result["hessian_top"]
    np.testing.assert_allclose(top["eigenvalues"], eigenvalues[::-1][:3], rtol=RTOL)
    np.testing.assert_allclose(top["smallest"], eigenvalues[0], rtol=RTOL, atol=1e-8)
    assert np.all(top["residuals"] < 1e-6 * abs(eigenvalues).max())
    np.testing.assert_allclose(top["two_over_lr"], 2 / 0.05)

    # gradient concentration against the dense top eigenvectors (top 3 are simple here)
    assert np.all(np.diff(eigenvalues[::-1][:4]) < -1e-6 * eigenvalues.max())
    projections = (eigenvectors[:, ::-1][:, :3].T @ gradient) ** 2
    np.testing.assert_allclose(
        result["gradient_concentration"]["fraction"], np.cumsum(projections) / (gradient @ gradient), rtol=RTOL
    )

    # SLQ at m = n: every node with weight is an eigenvalue; both starts resolve the top one
    density = result["hessian_density"]
    nodes, weights = np.asarray(density["nodes"]), np.asarray(density["weights"])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-9)
    weighted = nodes[weights > 1e-10]
    distance = np.abs(weighted[:, None] - eigenvalues[None]).min(axis=1)
    assert np.all(distance < 1e-6 * abs(eigenvalues).max())
    np.testing.assert_allclose(nodes[:, -1], eigenvalues[-1], rtol=RTOL)

    trace = result["hessian_trace"]
    assert abs(trace["trace"] - np.trace(hessian)) < 4 * trace["stderr"]
    assert 0 < trace["stderr"] < abs(np.trace(hessian)) + np.abs(hessian).sum() / n

    if not per_layer:
        return
    # per-layer: the blocks of the dense Hessian, by the parameters each layer owns
    blocks = layer_blocks(spec, ctx.state.params)
    assert sorted(np.concatenate([indices for _name, indices in blocks])) == list(range(n))  # every parameter
    for j, (_name, indices) in enumerate(blocks):
        block = hessian[np.ix_(indices, indices)]
        # lanczos_steps = n >= the block size: the block's run is complete
        np.testing.assert_allclose(top["layer_top"][j], np.linalg.eigvalsh(block)[-1], rtol=RTOL)
        assert abs(trace["layer_trace"][j] - np.trace(block)) < 4 * trace["layer_stderr"][j] + 1e-9


def test_train_and_eval_mode_hessians_differ_and_each_matches_its_own(measured):
    tops = {}
    for mode, per_layer in (("train", False), ("eval", True)):  # the BN MLP's entries of NETS
        _spec, _ctx, hessian, _gradient, result = measured("mlp", True, mode, per_layer)
        reference = np.linalg.eigvalsh(hessian)[::-1][:2]
        np.testing.assert_allclose(result["hessian_top"]["eigenvalues"][:2], reference, rtol=RTOL)
        tops[mode] = reference
    assert abs(tops["train"][0] - tops["eval"][0]) > 1e-3 * abs(tops["train"][0])
    train_h, eval_h = measured("mlp", True, "train", False)[2], measured("mlp", True, "eval", True)[2]
    assert np.abs(train_h - eval_h).max() > 1e-3 * np.abs(train_h).max()


def test_power_iteration_probe_matches_the_dense_top_eigenvalue(measured):
    _spec, ctx, hessian, _gradient, _result = measured("mlp", True, "train", False)
    eigenvalues = np.linalg.eigvalsh(hessian)
    result = jax.jit(HessianTopProbe(k=1, method="power", power_iterations=300).measure)(ctx)
    largest = eigenvalues[np.argmax(np.abs(eigenvalues))]  # power iteration finds the largest magnitude
    np.testing.assert_allclose(result["eigenvalues"][np.argmax(np.abs(result["eigenvalues"]))], largest, rtol=1e-4)
    assert np.min(result["residuals"]) < 1e-2 * abs(largest)


def test_one_lanczos_run_is_shared_and_vectors_depend_only_on_seed_and_step(contexts):
    spec, ctx = contexts("mlp", True)

    def check(c):  # traced only (eval_shape): the identities are what is tested, not values
        c = c._replace(shared=SharedPieces())
        first = shared_curvature(c, bn_mode="train", steps=5, seed=0)
        assert shared_curvature(c, bn_mode="train", steps=5, seed=0).run is first.run
        assert shared_curvature(c, bn_mode="eval", steps=5, seed=0).run is not first.run
        assert c.shared.computed == {"hessian_vector_product": 2, "lanczos_run": 2}
        return first.run.alphas

    jax.eval_shape(check, ctx)
    probe = jax.jit(HessianTraceProbe(vectors=3, seed=7).measure)  # one compile: step is traced
    again = probe(ctx)
    np.testing.assert_array_equal(probe(ctx)["samples"], again["samples"])
    later = probe(ctx._replace(step=jnp.asarray(4)))
    assert not np.allclose(later["samples"], again["samples"])


def test_probes_are_registered_and_options_are_checked():
    assert isinstance(make_probe("hessian_top", k=2), HessianTopProbe)
    for name in ("hessian_trace", "hessian_density", "gradient_concentration"):
        make_probe(name)
    with pytest.raises(ValueError, match="method"):
        HessianTopProbe(method="arnoldi")
    with pytest.raises(ValueError, match="bn_mode"):
        HessianTraceProbe(bn_mode="population")


def test_a_curvature_built_without_a_piece_names_the_option_that_adds_it():
    from normlab.probes.curvature import Curvature

    bare = Curvature(hvp=None, theta=None, run=None, gradient=None)
    with pytest.raises(ValueError) as error:
        bare.loss_gradient()
    assert str(error.value) == "this Curvature has no gradient: build it with need_gradient=True"
    with pytest.raises(ValueError) as error:
        bare.lanczos_run()
    assert str(error.value) == "this Curvature has no Lanczos run: build it with need_run=True"
