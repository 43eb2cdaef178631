"""The Santurkar probes (ics, landscape, predictiveness, beta_smoothness, divergence) against slow
references and closed forms.

Reference comparisons run in float64 (``jax.enable_x64``) so that 1e-5 relative checks the
algorithm -- which parameters move, which BN mode, which step -- and not float32 rounding in
differences of nearly equal gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from santurkar_reference import (
    FlatMLP,
    LeastSquares,
    SmallConvNet,
    SmallMLP,
    TwoLinear,
    block_owner,
    reference_ics,
    reference_walk,
)

from normlab.probes import (
    BetaSmoothnessProbe,
    DivergenceProbe,
    ICSProbe,
    LandscapeProbe,
    PredictivenessProbe,
    ProbeContext,
    at_steps,
    every,
    make_probe,
)
from normlab.probes.ics import STRATEGIES, layer_parameters
from normlab.probes.landscape import step_size_grid
from normlab.probes.shared import SharedPieces
from normlab.train import make_network, make_optimizer, train_step

RTOL = 1e-5
LR = 0.05


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _to64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _data(kind: str, n: int = 12, seed: int = 1):
    rng = np.random.default_rng(seed)
    shape = (n, 5) if kind == "mlp" else (n, 6, 6, 2)
    x = jnp.asarray(rng.normal(size=shape) * 2 + 0.5)
    y = jnp.asarray(rng.integers(0, 3, n), jnp.int32)
    return x, y


def _context(kind: str, batch_norm: bool, optimizer: str, steps_before: int = 3, lr: float = LR, model=None):
    """A network after a few real steps (momentum buffer and running statistics non-trivial)."""
    model_class = SmallMLP if kind == "mlp" else SmallConvNet
    tx, schedule = make_optimizer(optimizer, lr, total_steps=100)
    model = model_class(batch_norm=batch_norm, rngs=nnx.Rngs(0)) if model is None else model
    spec, state = make_network("net", model, tx, schedule)
    params = _to64(state.params)
    state = state._replace(params=params, rest=_to64(state.rest), opt_state=tx.init(params))
    step = jax.jit(lambda s, x, y: train_step(spec, s, x, y))
    for i in range(steps_before):
        state, _ = step(state, *_data(kind, seed=10 + i))
    x, y = _data(kind)
    _, outputs = step(state, x, y)
    ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=outputs.loss, grads=outputs.grads,
                       activations=outputs.intermediates,
                       learning_rate=jnp.asarray(lr), step=jnp.asarray(steps_before))
    return spec, ctx


CASES = [(kind, bn, opt) for kind in ("mlp", "conv") for bn in (False, True) for opt in ("sgd", "momentum")]


@pytest.mark.parametrize("kind,batch_norm,optimizer", CASES + [("mlp", True, "eval"), ("conv", True, "eval")])
def test_ics_matches_the_per_layer_reference(kind, batch_norm, optimizer):
    bn_mode = "eval" if optimizer == "eval" else "train"
    spec, ctx = _context(kind, batch_norm, "momentum" if optimizer == "eval" else optimizer)
    result = jax.jit(ICSProbe(bn_mode=bn_mode).measure)(ctx)
    reference = reference_ics(spec, ctx.state, ctx.x, ctx.y, LR, block_owner, train=bn_mode == "train")
    np.testing.assert_allclose(result["l2"], reference["l2"], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(result["cosine"], reference["cosine"], rtol=RTOL)
    assert result["l2"][0] == 0 and result["cosine"][0] == pytest.approx(1.0)
    assert np.all(result["l2"][1:] > 0)  # earlier layers really moved
    np.testing.assert_allclose(result["cosine_mean"], reference["cosine"][1:].mean(), rtol=RTOL)


def flat_owner(path: tuple) -> float:
    """Hand-written for FlatMLP: ``dense0`` is layer 0, ``dense1`` layer 1, ``bn0`` is held (never moves)."""
    return {"dense0": 0, "dense1": 1}.get(path[0], math.inf)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ics_holds_a_parameter_owned_by_no_weight_layer(strategy):
    spec, ctx = _context("mlp", True, "momentum", model=FlatMLP(rngs=nnx.Rngs(0)))
    assert layer_parameters(spec, ctx.state.params)["(held)"] == ["bn0.bias", "bn0.scale"]
    result = jax.jit(ICSProbe(strategy=strategy).measure)(ctx)
    reference = reference_ics(spec, ctx.state, ctx.x, ctx.y, LR, flat_owner, train=True)
    np.testing.assert_allclose(result["l2"], reference["l2"], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(result["cosine"], reference["cosine"], rtol=RTOL)
    # Moving bn0 too would change G'_1: the reference with bn0 owned by layer 0 must differ.
    moved = reference_ics(
        spec, ctx.state, ctx.x, ctx.y, LR, lambda p: 0 if p[0] == "bn0" else flat_owner(p), train=True
    )
    assert abs(moved["l2"][1] - reference["l2"][1]) > 1e-3 * reference["l2"][1]


# The walk does not read the optimizer state, so each model meets each optimizer once.
WALK_CASES = [("mlp", False, "sgd"), ("mlp", True, "momentum"), ("conv", False, "momentum"), ("conv", True, "sgd"),
              ("mlp", True, "eval"), ("conv", True, "eval")]


@pytest.mark.parametrize("kind,batch_norm,optimizer", WALK_CASES)
def test_step_size_probes_match_the_per_point_reference(kind, batch_norm, optimizer):
    bn_mode = "eval" if optimizer == "eval" else "train"
    spec, ctx = _context(kind, batch_norm, "momentum" if optimizer == "eval" else optimizer)
    options = dict(points=4, low=0.5, high=4.0, spacing="log", bn_mode=bn_mode)
    probes = (LandscapeProbe(**options), PredictivenessProbe(**options), BetaSmoothnessProbe(**options),
              DivergenceProbe(points=3, low=1e-4, high=1e-1, bn_mode=bn_mode))
    result = jax.jit(lambda c: {p.name: p.measure(c) for p in probes})(ctx)

    etas = np.geomspace(0.5, 4.0, 4) * LR
    reference = reference_walk(spec, ctx.state, ctx.x, ctx.y, etas, train=bn_mode == "train")
    landscape, predictiveness, beta = result["landscape"], result["predictiveness"], result["beta_smoothness"]
    np.testing.assert_allclose(landscape["etas"], etas, rtol=1e-12)
    np.testing.assert_allclose(landscape["loss"], reference["loss"], rtol=RTOL)
    np.testing.assert_allclose([landscape["min"], landscape["max"]],
                               [reference["loss"].min(), reference["loss"].max()], rtol=RTOL)
    np.testing.assert_allclose(landscape["loss0"], reference["loss0"], rtol=RTOL)
    np.testing.assert_allclose(predictiveness["distance"], reference["distance"], rtol=RTOL)
    np.testing.assert_allclose(predictiveness["max"], reference["distance"].max(), rtol=RTOL)
    np.testing.assert_allclose(beta["ratio"], reference["ratio_beta"], rtol=RTOL)
    np.testing.assert_allclose(beta["beta"], reference["ratio_beta"].max(), rtol=RTOL)

    divergence_etas = np.geomspace(1e-4, 1e-1, 3)  # absolute, not times lr
    divergence = reference_walk(spec, ctx.state, ctx.x, ctx.y, divergence_etas, train=bn_mode == "train")
    np.testing.assert_allclose(result["divergence"]["etas"], divergence_etas, rtol=1e-12)
    np.testing.assert_allclose(result["divergence"]["ratio"], divergence["ratio_divergence"], rtol=RTOL)


@pytest.mark.parametrize("batching", ["unrolled", "map", "vmap"])
def test_the_batching_layouts_agree(batching):
    spec, ctx = _context("mlp", True, "momentum")
    auto = jax.jit(PredictivenessProbe(points=3).measure)(ctx)
    other = jax.jit(PredictivenessProbe(points=3, batching=batching).measure)(ctx)
    np.testing.assert_allclose(other["distance"], auto["distance"], rtol=1e-9)
    if batching == "map":
        unrolled = jax.jit(ICSProbe().measure)(ctx)
        mapped = jax.jit(ICSProbe(strategy="map").measure)(ctx)
        np.testing.assert_allclose(mapped["l2"], unrolled["l2"], rtol=1e-9)
        np.testing.assert_allclose(mapped["cosine"], unrolled["cosine"], rtol=1e-9)


def test_landscape_and_predictiveness_have_exact_formulas_on_least_squares():
    """L = |X w - Y|^2 / n: L(w - eta g) = L - eta |g|^2 + eta^2 |X g|^2 / n and g(w - eta g) = g - eta H g,
    H = 2 X^T X / n."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(20, 4)))
    y = jnp.asarray(rng.normal(size=(20, 2)))
    tx, schedule = make_optimizer("sgd", 0.01, total_steps=10)
    spec, state = make_network("ls", LeastSquares(4, 2, rngs=nnx.Rngs(0)), tx, schedule, task="regression")
    state = state._replace(params=_to64(state.params))
    _, outputs = train_step(spec, state, x, y)
    ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=outputs.loss, grads=outputs.grads, activations=(),
                       learning_rate=jnp.asarray(0.01), step=jnp.asarray(0))
    options = dict(points=5, low=0.01, high=30.0, spacing="log")
    probes = (LandscapeProbe(**options), PredictivenessProbe(**options), BetaSmoothnessProbe(**options),
              DivergenceProbe(), ICSProbe())
    result = jax.jit(lambda c: {p.name: p.measure(c) for p in probes})(ctx)

    X, Y = np.asarray(x), np.asarray(y)
    W = np.asarray(state.params["linear"]["kernel"][...])
    residual = X @ W - Y
    n = len(X)
    loss0 = np.sum(residual**2) / n
    g = 2 * X.T @ residual / n
    hg = 2 * X.T @ (X @ g) / n
    etas = np.geomspace(0.01, 30.0, 5) * 0.01
    expected_loss = loss0 - etas * np.sum(g**2) + etas**2 * np.sum((X @ g) ** 2) / n
    np.testing.assert_allclose(result["landscape"]["loss"], expected_loss, rtol=RTOL)
    np.testing.assert_allclose(result["predictiveness"]["distance"], etas * np.linalg.norm(hg), rtol=RTOL)
    np.testing.assert_allclose(result["beta_smoothness"]["beta"], np.linalg.norm(hg) / np.linalg.norm(g), rtol=RTOL)
    np.testing.assert_allclose(result["beta_smoothness"]["ratio"], np.linalg.norm(hg) / np.linalg.norm(g), rtol=RTOL)
    grid = np.geomspace(1e-5, 1e-1, 9)
    expected_divergence = (loss0 - grid * np.sum(g**2) + grid**2 * np.sum((X @ g) ** 2) / n) / loss0
    np.testing.assert_allclose(result["divergence"]["ratio"], expected_divergence, rtol=RTOL)
    np.testing.assert_allclose(result["ics"]["l2"], [0.0], atol=0)  # one layer: nothing precedes it


def test_ics_of_a_two_layer_linear_network_in_closed_form():
    """f = X W1 W2, L = |f - Y|^2 / n: G'_2 = 2 (X W1')^T (X W1' W2 - Y) / n with W1' = W1 - lr G_1."""
    rng = np.random.default_rng(4)
    x, y = jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(16, 2)))
    tx, schedule = make_optimizer("sgd", 0.02, total_steps=10)
    spec, state = make_network("lin", TwoLinear(3, 4, 2, rngs=nnx.Rngs(0)), tx, schedule, task="regression")
    state = state._replace(params=_to64(state.params))
    _, outputs = train_step(spec, state, x, y)
    result = jax.jit(ICSProbe().measure)(ProbeContext(
        spec=spec, state=state, x=x, y=y, loss=outputs.loss, grads=outputs.grads, activations=(),
        learning_rate=jnp.asarray(0.02), step=jnp.asarray(0)))
    X, Y = np.asarray(x), np.asarray(y)
    W1, W2 = (np.asarray(state.params[name]["kernel"][...]) for name in ("first", "second"))
    n = len(X)
    residual = X @ W1 @ W2 - Y
    G1, G2 = 2 * X.T @ residual @ W2.T / n, 2 * (X @ W1).T @ residual / n
    W1_next = W1 - 0.02 * G1
    G2_shifted = 2 * (X @ W1_next).T @ (X @ W1_next @ W2 - Y) / n
    np.testing.assert_allclose(result["l2"][1], np.linalg.norm(G2 - G2_shifted), rtol=RTOL)
    cosine = np.sum(G2 * G2_shifted) / (np.linalg.norm(G2) * np.linalg.norm(G2_shifted))
    np.testing.assert_allclose(result["cosine"][1], cosine, rtol=RTOL)


@pytest.mark.parametrize(
    "probe_class,key",
    [
        (ICSProbe, "l2"),
        (LandscapeProbe, "loss"),
        (PredictivenessProbe, "distance"),
        (BetaSmoothnessProbe, "ratio"),
        (DivergenceProbe, "ratio"),
    ],
)
def test_the_bn_mode_switch_changes_the_result_and_is_recorded(probe_class, key):
    spec, ctx = _context("mlp", True, "momentum", steps_before=2)
    measured = {}
    for mode in ("train", "eval"):
        probe = probe_class(bn_mode=mode)
        measured[mode] = jax.jit(probe.measure)(ctx)
        assert probe.meta(spec)["bn_mode"] == mode
    assert not np.allclose(measured["train"][key], measured["eval"][key], rtol=1e-3)


@pytest.mark.parametrize("name", ["ics", "landscape", "predictiveness", "beta_smoothness", "divergence"])
def test_meta_names_its_headline_formula_paper_and_mode(name):
    spec, ctx = _context("mlp", False, "sgd", steps_before=0)
    probe = make_probe(name)
    meta = probe.meta(spec)
    result = jax.jit(probe.measure)(ctx)
    assert probe.headline.key in result and np.ndim(result[probe.headline.key]) == 0
    assert meta["bn_mode"] == "train" and meta["formula"] and meta["paper"]
    assert meta["layers"] == list(spec.weight_layer_names)
    if name == "ics":
        assert result["l2"].shape == (3,) and result["cosine"].shape == (3,)  # 2 hidden + head
    else:
        assert len(meta["step_sizes"]) == len(result["etas"]) == probe.points
        assert meta["step_size_unit"] == ("absolute" if name == "divergence" else "x learning rate")
    assert all(np.all(np.isfinite(np.asarray(v))) for v in result.values())


def test_the_probes_build_from_the_runner_options():
    spec, _ctx = _context("mlp", False, "sgd", steps_before=0)
    landscape = dict(points=5, low=0.01, high=30.0, spacing="log", bn_mode="eval")
    for name in ("landscape", "predictiveness", "beta_smoothness"):
        probe = make_probe(name, schedule=every(16), **landscape)
        np.testing.assert_allclose(probe.meta(spec)["step_sizes"], step_size_grid(0.01, 30.0, 5, "log"))
        assert probe.schedule(32) and not probe.schedule(8)
    assert make_probe("ics", schedule=every(16), bn_mode="eval").bn_mode == "eval"
    divergence = make_probe("divergence", schedule=at_steps(0, 1, 2), bn_mode="train")
    assert divergence.schedule(2) and not divergence.schedule(3)
    assert DivergenceProbe().schedule(0) and not DivergenceProbe().schedule(5)  # first few batches by default
    with pytest.raises(ValueError, match="spacing"):
        LandscapeProbe(spacing="cubic")
    with pytest.raises(ValueError, match="bn_mode"):
        ICSProbe(bn_mode="running")


def test_the_three_s18_probes_share_one_walk_per_context():
    spec, ctx = _context("mlp", True, "sgd", steps_before=0)
    seen = []

    def both(c):
        c = c._replace(shared=SharedPieces())  # what the group step gives each network at each step
        walks = [LandscapeProbe().walk(c), PredictivenessProbe().walk(c), BetaSmoothnessProbe().walk(c),
                 LandscapeProbe(points=3).walk(c)]
        seen.append([id(w) for w in walks])
        return walks[0].losses

    jax.jit(both)(ctx)
    first, second, third, other_grid = seen[0]
    assert first == second == third and other_grid != first


def test_parameters_are_grouped_by_layer_and_ties_are_held():
    _, ctx = _context("mlp", True, "sgd", steps_before=0)
    groups = layer_parameters(ctx.spec, ctx.state.params)
    assert groups["layers.0.linear"] == ["layers.0.bn.bias", "layers.0.bn.scale", "layers.0.linear.bias",
                                         "layers.0.linear.kernel"]
    assert groups["head"] == ["head.bias", "head.kernel"] and groups["(held)"] == []
    tx, schedule = make_optimizer("sgd", 0.1, total_steps=10)
    spec, state = make_network("flat", FlatMLP(rngs=nnx.Rngs(0)), tx, schedule)
    assert layer_parameters(spec, state.params)["(held)"] == ["bn0.bias", "bn0.scale"]
