"""The oneDNN conv path: equal to XLA's convolution through every transform normlab uses (grad,
forward-over-reverse Hessian-vector products, reverse-over-reverse, vmap over inputs and over
kernels), deterministic, and refused in one line when it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.experiments.config import Config, validate
from normlab.models import conv2d, onednn, resolve_conv_path
from normlab.models.conv import Conv

needs_onednn = pytest.mark.skipif(not onednn.available(), reason=f"oneDNN path: {onednn.unavailable_reason()}")


def relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def loss(x, kernel, path, padding="SAME"):
    """A non-quadratic scalar, so second derivatives involve the conv's both arguments."""
    return jnp.sum(jnp.sin(conv2d(x, kernel, padding=padding, path=path)) ** 2)


def sample(shape=(2, 6, 5, 3), kernel=(3, 3, 3, 4)):
    kx, kk, kv = jax.random.split(jax.random.key(7), 3)
    return jax.random.normal(kx, shape), jax.random.normal(kk, kernel), jax.random.normal(kv, kernel)


@needs_onednn
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((2, 0), (1, 3))])
def test_second_derivatives_match_xla(padding):
    x, kernel, direction = sample()

    def hvp_forward_over_reverse(path):
        return jax.jvp(lambda k: jax.grad(loss, 1)(x, k, path, padding), (kernel,), (direction,))[1]

    def hvp_reverse_over_reverse(path):
        return jax.grad(lambda k: jnp.vdot(jax.grad(loss, 1)(x, k, path, padding), direction))(kernel)

    def input_hvp(path):  # d/dx of the kernel gradient: the mixed second derivative
        return jax.jvp(lambda x: jax.grad(loss, 1)(x, kernel, path, padding), (x,), (x[::-1],))[1]

    for measure in (hvp_forward_over_reverse, hvp_reverse_over_reverse, input_hvp):
        assert relative_error(measure("onednn"), measure("xla")) < 1e-5, measure.__name__


@needs_onednn
def test_vmap_over_inputs_kernels_and_both_matches_xla():
    x, kernel, _ = sample()
    xs = jnp.stack([x, 2 * x, -x])
    kernels = jnp.stack([kernel, kernel[::-1], 0.5 * kernel])
    for in_axes, args in (((0, None), (xs, kernel)), ((None, 0), (x, kernels)), ((0, 0), (xs, kernels)),
                          ((1, 0), (jnp.moveaxis(xs, 0, 1), kernels))):
        def grads(path, in_axes=in_axes, args=args):
            return jax.vmap(jax.grad(loss, (0, 1)), in_axes=(*in_axes, None))(*args, path)
        for got, want in zip(grads("onednn"), grads("xla")):
            assert relative_error(got, want) < 1e-5, in_axes


@needs_onednn
def test_repeated_calls_are_bitwise_identical():
    x, kernel, _ = sample((8, 16, 16, 8), (3, 3, 8, 16))
    step = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)
    first, second = step(x, kernel, "onednn"), step(x, kernel, "onednn")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@needs_onednn
def test_reports_the_kernel_onednn_chose():
    name = onednn.implementation("backward_weights", (2, 8, 8, 3), (3, 3, 3, 4), ((1, 1), (1, 1)))
    assert name and name != "?"


@needs_onednn
def test_auto_takes_onednn_except_maps_smaller_than_the_kernel():
    if jax.default_backend() != "cpu":
        pytest.skip("the rule is CPU's")
    assert resolve_conv_path("auto", (128, 32, 32, 3), (3, 3, 3, 8)) == "onednn"
    assert resolve_conv_path("auto", (128, 8, 8, 16), (3, 3, 16, 32)) == "onednn"
    assert resolve_conv_path("auto", (128, 2, 2, 512), (3, 3, 512, 512)) == "im2col"
    assert resolve_conv_path("auto", (128, 8, 8, 16), (3, 3, 16, 32), jnp.float16) == "xla"  # float32 only


def test_unavailable_onednn_is_refused_in_one_line_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(onednn, "_load", lambda: "turned off by NORMLAB_ONEDNN")
    with pytest.raises(NormlabError, match='conv path "onednn" is unavailable: turned off') as error:
        Conv(3, 4, 3, key=jax.random.key(0), kernel_init=jax.nn.initializers.lecun_normal(), path="onednn")
    assert "\n" not in str(error.value)
    with pytest.raises(NormlabError, match="unavailable"):
        validate(Config(conv_path="onednn"))
    if jax.default_backend() == "cpu":
        assert resolve_conv_path("auto", (128, 8, 8, 16), (3, 3, 16, 32)) == "xla"
        assert resolve_conv_path("auto", (128, 32, 32, 3), (3, 3, 3, 8)) == "im2col"


def _availability_in_a_fresh_process(env):
    code = "from normlab.models import onednn; print(onednn.unavailable_reason())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_environment_variable_turns_the_path_off():
    assert _availability_in_a_fresh_process({onednn.ENV_VARIABLE: "0"}) == f"turned off by {onednn.ENV_VARIABLE}"


@needs_onednn
def test_a_corrupt_cached_library_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(onednn.DIR_VARIABLE, str(tmp_path))
    toolchain = onednn.find_toolchain()
    assert not isinstance(toolchain, str)
    cached = onednn.library_path(toolchain)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"not a shared library")
    assert _availability_in_a_fresh_process({onednn.DIR_VARIABLE: str(tmp_path)}) == "None"
    assert cached.read_bytes()[:4] == b"\x7fELF"


@needs_onednn
@pytest.mark.parametrize("shape,pads", [
    ((2, 16, 16, 1, 3, 5), ((8, 8), (8, 8))),  # LeNet's first layer on 16x16 images (pad 8, kernel 5)
    ((2, 1, 7, 1, 1, 4), ((3, 6), (6, 2))),
    ((1, 11, 5, 3, 4, 2), ((6, -1), (0, 5))),  # a negative pad crops
])
def test_pads_beyond_the_kernel_match_explicit_padding(shape, pads):
    """oneDNN takes pads in [0, k - 1] only (larger ones crashed it); the rest is applied as padding
    or cropping. The reference pads (or crops) explicitly and convolves VALID: XLA's own CPU
    convolution with such pads gave wrong input gradients here (up to 3.05 apart on the second case)."""
    n, h, w, c_in, c_out, k = shape
    kx, kk, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, (n, h, w, c_in))
    kernel = jax.random.normal(kk, (k, k, c_in, c_out))

    def reference(x, kernel):
        padded = jax.lax.pad(x, jnp.array(0.0), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
        return jax.lax.conv_general_dilated(padded, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=jax.lax.Precision.HIGHEST)

    want = reference(x, kernel)
    got = conv2d(x, kernel, padding=pads, path="onednn")
    assert got.shape == want.shape and relative_error(got, want) < 1e-5
    cotangent = jax.random.normal(kg, want.shape)
    got_grads = jax.vjp(lambda x, k: conv2d(x, k, padding=pads, path="onednn"), x, kernel)[1](cotangent)
    want_grads = jax.vjp(reference, x, kernel)[1](cotangent)
    for g, g_ref in zip(got_grads, want_grads):
        assert relative_error(g, g_ref) < 1e-5
