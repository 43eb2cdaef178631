"""The im2col, shifted and oneDNN conv paths equal XLA's convolution, in values and gradients, on every
model shape; the reshape pooling equals nnx's pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from normlab.models import conv2d, onednn, resolve_conv_path
from normlab.models.layers import POOLS, pool_2x2

ONEDNN = pytest.param("onednn", marks=pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN path: {onednn.unavailable_reason()}"))

# (N, H, W, C_in, C_out, kernel, padding): narrow VGG 3x3 SAME convs including the maps smaller
# than the kernel (2x2, 1x1), and LeNet's two 5x5 convs (padding 2 on 28x28, then none).
SHAPES = [
    (2, 8, 8, 3, 4, 3, "SAME"),
    (2, 4, 4, 8, 8, 3, "SAME"),
    (2, 2, 2, 8, 8, 3, "SAME"),
    (2, 1, 1, 8, 4, 3, "SAME"),
    (2, 28, 28, 1, 6, 5, 2),
    (2, 14, 14, 6, 16, 5, 0),
]


def relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("path", ["im2col", "shifted", ONEDNN])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}x{s[2]}x{s[3]}-{s[4]}k{s[5]}p{s[6]}")
def test_each_conv_path_matches_xla_values_and_gradients(shape, path):
    n, h, w, c_in, c_out, k, padding = shape
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (n, h, w, c_in))
    kernel = jax.random.normal(kk, (k, k, c_in, c_out))
    y_ref = conv2d(x, kernel, padding=padding, path="xla")
    cotangent = jax.random.normal(kg, y_ref.shape)

    def loss(x, kernel, path):
        return jnp.vdot(conv2d(x, kernel, padding=padding, path=path), cotangent)

    y = conv2d(x, kernel, padding=padding, path=path)
    assert y.shape == y_ref.shape and relative_error(y, y_ref) < 1e-5
    gradient = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)  # jit: faster than eager
    grads, grads_ref = gradient(x, kernel, path), gradient(x, kernel, "xla")
    for g, g_ref in zip(grads, grads_ref):  # w.r.t. the input, then the kernel
        assert relative_error(g, g_ref) < 1e-5


def test_auto_rule_and_forced_paths(tiny, monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: False)  # the rule without oneDNN (its own test has it)
    if jax.default_backend() == "cpu":
        assert resolve_conv_path("auto", (128, 2, 2, 512), (3, 3, 512, 512)) == "im2col"
        assert resolve_conv_path("auto", (128, 32, 32, 64), (3, 3, 64, 64)) == "im2col"
        assert resolve_conv_path("auto", (128, 8, 8, 16), (3, 3, 16, 32)) == "xla"
        assert resolve_conv_path("auto", (128, 32, 32, 3), (3, 3, 3, 8)) == "im2col"  # a first layer
        assert resolve_conv_path("auto", (128, 28, 28, 1), (5, 5, 1, 6)) == "im2col"
        assert resolve_conv_path("auto", (128, 32, 32, 8), (3, 3, 8, 8)) == "xla"
    else:
        assert resolve_conv_path("auto", (128, 2, 2, 512), (3, 3, 512, 512)) == "xla"
    assert resolve_conv_path("xla", (1, 2, 2, 8), (3, 3, 8, 8)) == "xla"
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    outputs = {}
    monkeypatch.undo()
    paths = ("xla", "im2col", "shifted", "onednn") if onednn.available() else ("xla", "im2col", "shifted")
    for path in paths:
        model = tiny("vgg", conv_path=path)
        assert {layer.path for layer in model.weight_layers[:10]} == {path}
        outputs[path] = model(x, train=False)
    np.testing.assert_allclose(outputs["im2col"], outputs["xla"], rtol=1e-4, atol=1e-6)
    for path in paths[1:]:
        np.testing.assert_allclose(outputs[path], outputs["xla"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_reshape_pooling_matches_nnx_pooling_values_and_gradients(kind, size):
    x = jax.random.normal(jax.random.key(2), (3, *size, 4))  # continuous: no ties in a window
    reference = POOLS[kind]

    def loss(x, pool):
        y = pool(x)
        return jnp.vdot(y, jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape))

    ours = lambda x: pool_2x2(x, kind)  # noqa: E731
    theirs = lambda x: reference(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")  # noqa: E731
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.grad(loss)(x, ours), jax.grad(loss)(x, theirs), rtol=1e-6, atol=1e-7)


# (shape as in SHAPES, the padding normlab is given, the explicit pads the reference uses): the
# reference is written here, independent of normlab's padding helper, so both paths can be wrong
# together only if this table is.
PADDING_CASES = [
    ((2, 8, 8, 3, 4, 3), "SAME", ((1, 1), (1, 1))),
    ((2, 2, 2, 8, 8, 3), "SAME", ((1, 1), (1, 1))),
    ((2, 6, 6, 2, 3, 2), "SAME", ((0, 1), (0, 1))),  # even kernel: the extra row/column after
    ((2, 28, 28, 1, 6, 5), 2, ((2, 2), (2, 2))),
    ((2, 14, 14, 6, 16, 5), 0, ((0, 0), (0, 0))),
    ((2, 7, 5, 2, 3, 3), (2, 1), ((2, 2), (1, 1))),
    ((2, 7, 5, 2, 3, 3), ((1, 0), (2, 1)), ((1, 0), (2, 1))),
    ((2, 6, 6, 2, 3, 3), "VALID", ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("path", ["xla", "im2col", "shifted", ONEDNN])
@pytest.mark.parametrize("shape,padding,pads", PADDING_CASES, ids=lambda c: str(c).replace(" ", ""))
def test_both_paths_match_lax_conv_with_explicit_padding(shape, padding, pads, path):
    n, h, w, c_in, c_out, k = shape
    kx, kk = jax.random.split(jax.random.key(2))
    x = jax.random.normal(kx, (n, h, w, c_in))
    kernel = jax.random.normal(kk, (k, k, c_in, c_out))
    want = jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)
    got = conv2d(x, kernel, padding=padding, path=path)
    assert got.shape == want.shape == (n, h + sum(pads[0]) - k + 1, w + sum(pads[1]) - k + 1, c_out)
    assert relative_error(got, want) < 1e-5
