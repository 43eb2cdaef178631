"""Stride-1 2-D convolution with a platform-aware implementation ("conv path").

Layout: inputs NHWC ``(N, H, W, C_in)``, kernels HWIO ``(kh, kw, C_in, C_out)``, outputs
``(N, H_out, W_out, C_out)`` with ``H_out = H + pad_top + pad_bottom - kh + 1`` (stride 1, no
dilation: the only convolutions normlab's models use).

Three mathematically identical paths:

- ``"xla"``: ``lax.conv_general_dilated``, XLA's own convolution.
- ``"im2col"``: pad the input, take the ``kh * kw`` shifted windows
  ``x_pad[:, i:i+H_out, j:j+W_out, :]`` for every kernel offset ``(i, j)``, concatenate them on the
  channel axis into patches ``P`` of shape ``(N, H_out, W_out, kh*kw*C_in)`` and do one matmul
  ``y = P @ K.reshape(kh*kw*C_in, C_out)``. The ``(i, j, c)`` order of the concatenation is the
  row-major order of HWIO, so the kernel reshape needs no transpose. Autodiff of slices, concat
  and matmul gives the backward pass, which is again matmuls: that is what makes it fast where
  XLA's CPU convolution is slow.

- ``"shifted"``: the ``kh * kw`` shifted windows each multiplied by ``K[i, j]`` and accumulated
  (no patch tensor). Measured slower than ``"xla"`` on every narrow-VGG shape (width 1/8, batch
  128: xla/shifted 0.15-0.86, ``bench/conv_paths.py``, on a heavily loaded machine): nine skinny
  (C_in <= 32) matmuls do not beat XLA's convolution, so ``"auto"`` never picks it; it is kept
  as a forceable, tested formulation for other machines.

- ``"onednn"``: oneDNN's convolution (the library PyTorch's CPU convolutions use) as FFI custom
  calls wrapped in JAX primitives (``normlab.models.onednn``); needs the ``normlab[onednn]`` extra
  and a C++ compiler, float32.

``"auto"`` picks ``"xla"`` on GPU/TPU (``jax.default_backend() != "cpu"``: cuDNN and the TPU
convolution units beat a materialized im2col). On CPU: im2col where the map is smaller than the
kernel; elsewhere ``"onednn"`` when it is available and the inputs are float32 (measured idle,
forward and both backward passes, batch 128: 1.6-5.3x faster than the old rule's pick on every
narrow-VGG conv and 1.1-3.5x on the full-width convs with maps of at least 4x4; on 2x2 maps im2col
stays 2x faster than oneDNN); without oneDNN the rule measured below.

What the rule rests on (``bench/conv_paths.py`` measures every VGG conv shape both ways, side by
side, and prints the ratios): (1) XLA's CPU convolution collapses when the feature map is smaller
than the kernel (2x2 maps under a 3x3 SAME kernel, VGG's last convs: tens of times slower than
im2col); (2) on wide, large maps the single big matmul wins, while on narrow layers materializing
the patches costs more than it saves.

(3) a first layer (at most ``IM2COL_MAX_INPUT_CHANNELS`` input channels: images) makes small
patches (27 values for RGB and 3x3), and XLA's convolution over 3 or 1 channels is poor: measured
idle, forward and both backward passes, im2col 1.47x faster on the narrow VGG's conv0 and 1.42x on
LeNet's conv0; in the whole train step (``bench/first_layer_conv.py``: without and with this
part of the rule, interleaved in one process; four rounds of 9 repeats, two of them by the
script's first draft) the narrow VGG 1.01-1.08x and LeNet 1.03-1.10x faster. In training a first
layer needs no input gradient, so its patches are never scattered back.

Rule (``use_im2col_on_cpu``): im2col on CPU iff the input map is smaller than the kernel in
height or width, or the layer has at least ``IM2COL_MIN_CHANNELS`` (64) output channels on a map of
at least ``IM2COL_MIN_PIXELS`` (16x16 = 256) positions, or at most ``IM2COL_MAX_INPUT_CHANNELS``
(4) input channels; otherwise xla. At width 1 that picks im2col for conv0-3 and conv8-9; at width
1/8 conv0 and conv8-9; LeNet's conv0 (1 channel, 5x5) and not its conv1 (force
``conv_path="im2col"`` to take it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.errors import NormlabError, check_name
from normlab.models import onednn

CONV_PATHS = ("auto", "xla", "im2col", "shifted", "onednn")

# ((top, bottom), (left, right)) explicit zero padding (defined with the oneDNN primitives).
Pads = onednn.Pads
PaddingLike = str | int | Sequence[int] | Sequence[Sequence[int]]

# The CPU rule's thresholds (see the module docstring for the measurements behind them).
IM2COL_MIN_CHANNELS = 64
IM2COL_MIN_PIXELS = 16 * 16
IM2COL_MAX_INPUT_CHANNELS = 4


def explicit_padding(padding: PaddingLike, kernel_hw: tuple[int, int]) -> Pads:
    """Turn a padding spec into explicit ``((top, bottom), (left, right))`` zero padding.

    ``"SAME"`` (stride 1): total ``k - 1`` per axis, ``(k - 1) // 2`` before and the rest after
    (XLA/TensorFlow convention; equal for odd kernels). ``"VALID"``: none. An int ``p``: ``p`` on
    every side (PyTorch's ``padding=p``). A pair ``(ph, pw)`` or explicit pairs are also accepted.
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0), (0, 0))
        if mode == "SAME":
            kh, kw = kernel_hw
            return (((kh - 1) // 2, (kh - 1) - (kh - 1) // 2), ((kw - 1) // 2, (kw - 1) - (kw - 1) // 2))
        raise NormlabError(f"unknown padding {padding!r}; valid: SAME, VALID, an int, or pairs")
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    items: tuple[Any, ...] = tuple(padding)  # ints or pairs, told apart below
    if len(items) == 2 and all(isinstance(p, int) for p in items):
        return ((items[0], items[0]), (items[1], items[1]))
    if len(items) == 2 and all(len(p) == 2 for p in items):
        (top, bottom), (left, right) = items
        return ((int(top), int(bottom)), (int(left), int(right)))
    raise NormlabError(f"bad padding {padding!r}; valid: SAME, VALID, an int, or pairs")


def map_smaller_than_kernel(x_shape: Sequence[int], kernel_shape: Sequence[int]) -> bool:
    """The input map is smaller than the kernel in height or width (VGG's 2x2 maps, 3x3 kernels)."""
    return x_shape[1] < kernel_shape[0] or x_shape[2] < kernel_shape[1]


def use_im2col_on_cpu(x_shape: Sequence[int], kernel_shape: Sequence[int]) -> bool:
    """The measured CPU rule (module docstring): tiny maps, wide layers on large maps, or few
    input channels (a first layer)."""
    _, h, w, _ = x_shape
    _, _, c_in, c_out = kernel_shape
    wide_on_large_map = c_out >= IM2COL_MIN_CHANNELS and h * w >= IM2COL_MIN_PIXELS
    few_input_channels = c_in <= IM2COL_MAX_INPUT_CHANNELS
    return map_smaller_than_kernel(x_shape, kernel_shape) or wide_on_large_map or few_input_channels


def resolve_conv_path(path: str, x_shape: Sequence[int], kernel_shape: Sequence[int],
                      dtype: Any = jnp.float32) -> str:
    """The concrete path (not ``"auto"``) for this input/kernel/dtype on the current backend."""
    check_name("conv path", path, CONV_PATHS)
    if path != "auto":
        return path
    if jax.default_backend() != "cpu":
        return "xla"
    small_map = map_smaller_than_kernel(x_shape, kernel_shape)
    if not small_map and jnp.dtype(dtype) == jnp.float32 and onednn.available():
        return "onednn"
    return "im2col" if use_im2col_on_cpu(x_shape, kernel_shape) else "xla"


def conv2d_xla(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 convolution by ``lax.conv_general_dilated`` (NHWC x HWIO -> NHWC)."""
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def conv2d_im2col(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 convolution as shifted slices + one matmul (see the module docstring)."""
    kh, kw, c_in, c_out = kernel.shape
    x_pad = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    h_out = x_pad.shape[1] - kh + 1
    w_out = x_pad.shape[2] - kw + 1
    windows = [
        x_pad[:, i:i + h_out, j:j + w_out, :] for i in range(kh) for j in range(kw)
    ]
    # (N, H_out, W_out, kh*kw*C_in); a 1x1 kernel needs no copy at all.
    patches = windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * c_in, c_out))


def conv2d_shifted(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 convolution as ``kh * kw`` shifted matmuls accumulated, no patch tensor.

    ``y = sum_{i,j} x_pad[:, i:i+H_out, j:j+W_out, :] @ K[i, j]`` with ``K[i, j]`` of shape
    (C_in, C_out): each term is one (N*H_out*W_out, C_in) x (C_in, C_out) matmul on a slice XLA
    can fuse into the dot, and the backward is again such matmuls (and pads of their results).
    """
    kh, kw, _, _ = kernel.shape
    x_pad = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    h_out = x_pad.shape[1] - kh + 1
    w_out = x_pad.shape[2] - kw + 1
    y = jnp.dot(x_pad[:, 0:h_out, 0:w_out, :], kernel[0, 0])
    for i in range(kh):
        for j in range(kw):
            if i or j:
                y = y + jnp.dot(x_pad[:, i:i + h_out, j:j + w_out, :], kernel[i, j])
    return y


def conv2d(x: jax.Array, kernel: jax.Array, *, padding: PaddingLike = "SAME",
           path: str = "auto") -> jax.Array:
    """Stride-1 NHWC/HWIO convolution through the chosen path (one of ``CONV_PATHS``).

    Shapes: ``x`` (N, H, W, C_in), ``kernel`` (kh, kw, C_in, C_out) -> (N, H_out, W_out, C_out).
    """
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise NormlabError(
            f"conv2d needs x (N, H, W, C_in) and kernel (kh, kw, C_in, C_out); "
            f"got x {tuple(x.shape)} and kernel {tuple(kernel.shape)}"
        )
    pads = explicit_padding(padding, (kernel.shape[0], kernel.shape[1]))
    return CONV_FUNCTIONS[resolve_conv_path(path, x.shape, kernel.shape, x.dtype)](x, kernel, pads)


CONV_FUNCTIONS = {"xla": conv2d_xla, "im2col": conv2d_im2col, "shifted": conv2d_shifted,
                  "onednn": onednn.conv2d_onednn}


class Conv(nnx.Module):
    """A stride-1 convolution layer holding ``kernel`` (HWIO) and optional ``bias`` Params.

    ``y = conv2d(x, kernel) + bias``. The kernel is drawn from ``kernel_init(key, shape)`` with
    the explicit ``key`` the model builder hands each weight layer (so the draw order is fixed);
    the bias starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int],
                 *, key: jax.Array, kernel_init, padding: PaddingLike = "SAME",
                 use_bias: bool = True, path: str = "auto"):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        check_name("conv path", path, CONV_PATHS)
        if path == "onednn":
            onednn.require()  # fail at construction, before any work, when it cannot run
        self.kernel_size = (kh, kw)
        self.in_features, self.out_features = in_features, out_features
        self.padding = explicit_padding(padding, (kh, kw))
        self.path = path
        self.kernel = nnx.Param(kernel_init(key, (kh, kw, in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv2d(x, self.kernel[...], padding=self.padding, path=self.path)
        if self.bias is not None:
            y = y + self.bias[...]
        return y
