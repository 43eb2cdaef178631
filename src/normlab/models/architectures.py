"""The five built-in architectures as plain data: the seed notebooks' ``mlp`` and ``vgg``, BN15's
``ioffe_mlp``, d2l's BNLeNet (``lenet``) and S18's deep linear network (``dln``).

Each ``*_architecture`` function is pure: from the input shape, the number of outputs, the width
multiplier and its own options it returns an :class:`Architecture` (layer list, activation,
initializer). ``build.py`` turns that into modules. Keeping the shapes here, apart from JAX,
makes every parameter count checkable by hand.

Parameter counts (exact; "BN" adds a scale and a bias per normalized feature, running mean and
variance are ``nnx.BatchStat``, not parameters):

========== ============================ ============ =============================================
model      input                        no norm      BN
========== ============================ ============ =============================================
mlp        784                          242,762      243,658 (+2 x (256+128+64))
ioffe_mlp  784                          99,710       100,310 (+2 x 300)
vgg        32x32x3                      9,464,522    9,470,410 (+2 x 2,944 conv channels); with the
                                                     5,888 running statistics 9,476,298, the seed
                                                     notebook's count (see ``vgg_architecture``)
lenet      28x28x1 (pad 2) or 32x32x1   61,706       62,158  (+2 x (6+16+120+84))
dln        10, depth 25                 2,500        2,980   (+2 x 10 x 24)
========== ============================ ============ =============================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax

from normlab.errors import NormlabError
from normlab.registry import Registry

Initializer = Callable[..., jax.Array]


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: ``kernel_size`` None for a dense layer, else a square conv kernel.

    ``pool`` ("max" | "avg" | None) is a 2x2 stride-2 pooling after the activation; ``normable``
    says whether the architecture puts a norm here at all (VGG's dense layers: no, by default).
    """

    name: str
    features: int
    kernel_size: int | None = None
    padding: str | int = "SAME"
    pool: str | None = None
    normable: bool = True


@dataclass(frozen=True)
class Architecture:
    """Hidden layers, output size, default activation and the weight initializer."""

    hidden: tuple[LayerSpec, ...]
    outputs: int
    activation: str
    kernel_init: Initializer
    init_name: str  # for describe_model and docs
    use_bias: bool = True
    task: str = "classification"  # or "regression"


def scaled(features: int, width: float) -> int:
    """``max(1, round(features * width))``: the width multiplier never empties a layer."""
    return max(1, int(round(features * width)))


def _require_classes(model: str, num_classes: int) -> int:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise NormlabError(f"{model} is a classifier: num_classes must be >= 1, got {num_classes!r}")
    return num_classes


def _require_image(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise NormlabError(f"{model} needs image inputs (H, W, C); got input_shape {input_shape}")
    return input_shape


def _dense_stack(prefix: str, widths) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(f"{prefix}{i}", w) for i, w in enumerate(widths))


def mlp_architecture(input_shape, num_classes, width) -> Architecture:
    """Part 1's MLP: flatten, Dense 256-128-64 (ReLU), Dense to the classes.

    Kernels LeCun-normal (truncated normal, variance 1/fan_in), biases 0: Flax ``Dense``'s
    defaults, which the seed notebook used. 784 inputs:
    ``784*256+256 + 256*128+128 + 128*64+64 + 64*10+10 = 242,762``.
    """
    hidden = _dense_stack("dense", [scaled(w, width) for w in (256, 128, 64)])
    return Architecture(hidden, _require_classes("mlp", num_classes), "relu",
                        jax.nn.initializers.lecun_normal(), "lecun_normal")


def ioffe_mlp_architecture(input_shape, num_classes, width, *, init_std: float = 0.01
                           ) -> Architecture:
    """BN15 Sec. 4.1: three hidden layers of 100 sigmoid units, then 10 outputs.

    BN15 says only that the weights are "initialized to small random Gaussian values" and gives
    no number; we use ``N(0, init_std^2)`` with ``init_std = 0.01`` for every kernel (including
    the output layer), biases 0. With binary 28x28 digits (about 100-150 pixels on) that puts the
    first sigmoid inputs at std about 0.1, in the sigmoid's linear range, and shrinks
    backpropagated gradients by about 0.01 * sqrt(100) * 0.25 = 0.025 per layer -- the slow
    baseline BN15 Fig. 1 shows. The option ``init_std`` changes it; record it with the run.
    784 inputs: ``784*100+100 + 2*(100*100+100) + 100*10+10 = 99,710``.
    """
    if not init_std > 0:
        raise NormlabError(f"ioffe_mlp option init_std must be > 0, got {init_std!r}")
    hidden = _dense_stack("dense", [scaled(100, width)] * 3)
    return Architecture(hidden, _require_classes("ioffe_mlp", num_classes), "sigmoid",
                        jax.nn.initializers.normal(init_std), f"normal(std={init_std:g})")


VGG_CONV_WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512, 512, 512)
VGG_POOL_AFTER = (1, 3, 5, 7, 9)


def vgg_architecture(input_shape, num_classes, width, *, norm_dense: bool = False
                     ) -> Architecture:
    """Part 2's / S18's VGG: ten 3x3 SAME convs, 2x2 max-pool after convs 1,3,5,7,9, Dense 96-96.

    Conv widths 64,64,128,128,256,256,512,512,512,512 times ``width``; the classifier's two
    hidden Dense layers keep 96 units at every width (the first one's input is
    ``512*width * (H/32) * (W/32)``). ReLU, Glorot-normal kernels (truncated normal, variance
    2/(fan_in+fan_out)), zero biases, conv biases kept.

    Norm placement: after each of the ten convs only (``norm_dense=True`` also normalizes the two
    hidden Dense layers). 32x32x3: the convs hold 9,404,992 parameters and the Dense layers
    59,530, total 9,464,522. The seed notebook's BN count 9,476,298 is 11,776 more: that is
    4 x 2,944 (2,944 = the ten convs' channels), i.e. BN after every conv counted with its scale,
    bias *and* its running mean and variance (the notebook summed every array of
    ``nnx.split(model)``). As parameters BN adds 2 x 2,944 = 5,888 (9,470,410). No other
    placement fits: BN on the Dense layers too would add 2 x 192 or 4 x 192 more, and 11,776
    parameters alone would need 5,888 normalized features.
    """
    h, w, _ = _require_image("vgg", input_shape)
    if h < 32 or w < 32:
        raise NormlabError(f"vgg pools five times: needs at least 32x32 inputs, got {h}x{w}")
    convs = tuple(
        LayerSpec(f"conv{i}", scaled(c, width), kernel_size=3, padding="SAME",
                  pool="max" if i in VGG_POOL_AFTER else None)
        for i, c in enumerate(VGG_CONV_WIDTHS)
    )
    dense = tuple(LayerSpec(f"dense{i}", 96, normable=bool(norm_dense)) for i in range(2))
    return Architecture(convs + dense, _require_classes("vgg", num_classes), "relu",
                        jax.nn.initializers.glorot_normal(), "glorot_normal")


def lenet_first_padding(input_shape) -> int:
    """``"auto"`` padding of LeNet's first conv: enough to reach LeNet-5's 32x32 frame.

    ``max(0, (32 - min(H, W)) // 2)``: 2 for 28x28 (d2l's LeNet, ``padding=2``), 0 for 32x32;
    either way the second conv sees 14x14 and the flatten has 16*5*5 = 400 features.
    """
    return max(0, (32 - min(input_shape[0], input_shape[1])) // 2)


def lenet_architecture(input_shape, num_classes, width, *, first_padding: str | int = "auto"
                       ) -> Architecture:
    """d2l's BNLeNet: Conv(6, 5x5) - AvgPool - Conv(16, 5x5) - AvgPool - Dense 120 - Dense 84.

    Sigmoid activations, Xavier-uniform kernels (d2l's ``init_cnn``), biases 0 (d2l leaves
    PyTorch's uniform bias init; we keep all biases at 0 as everywhere in normlab).
    First-conv padding: ``"auto"`` = :func:`lenet_first_padding` (2 on 28x28, 0 on 32x32), so
    both sizes give the same network. Note d2l's BN chapter (and the seed notebook's BNLeNet)
    uses *no* padding on 28x28 (flatten 16*4*4 = 256, 44,426 parameters without norm): pass
    ``first_padding=0`` for that. 28x28x1 with padding 2: ``1*6*25+6 + 6*16*25+16 + 400*120+120
    + 120*84+84 + 84*10+10 = 61,706``.
    """
    h, w, _ = _require_image("lenet", input_shape)
    if first_padding == "auto":
        first_padding = lenet_first_padding(input_shape)
    if not isinstance(first_padding, int) or first_padding < 0:
        raise NormlabError(f"lenet option first_padding must be 'auto' or an int >= 0, "
                           f"got {first_padding!r}")
    hidden = (
        LayerSpec("conv0", scaled(6, width), kernel_size=5, padding=first_padding, pool="avg"),
        LayerSpec("conv1", scaled(16, width), kernel_size=5, padding=0, pool="avg"),
        LayerSpec("dense0", scaled(120, width)),
        LayerSpec("dense1", scaled(84, width)),
    )
    return Architecture(hidden, _require_classes("lenet", num_classes), "sigmoid",
                        jax.nn.initializers.glorot_uniform(), "glorot_uniform")


def dln_architecture(input_shape, num_classes, width, *, depth: int = 25) -> Architecture:
    """S18's deep linear network: ``depth`` square D x D linear layers, no bias, no activation.

    ``f(x) = W_k ... W_1 x`` with D = the input dimension (10 in S18) and ``k = depth``; a norm,
    when given, follows every layer but the last. Regression: the outputs are D numbers and the
    training loss is S18's ``||W_k...W_1 x - A x||^2`` (the train stage owns it). Kernels
    Glorot-normal (variance 1/D for square layers, which keeps the product's scale at init;
    S18 does not state its init). ``num_classes`` must be 0 (regression) or D; ``width`` must
    be 1. Parameters: ``depth * D^2`` (2,500 for D = 10, k = 25).
    """
    if len(input_shape) != 1:
        raise NormlabError(f"dln needs vector inputs (D,); got input_shape {input_shape}")
    (dim,) = input_shape
    if num_classes not in (0, dim):
        raise NormlabError(f"dln maps R^{dim} to R^{dim}: num_classes must be 0 or {dim}, "
                           f"got {num_classes!r}")
    if width != 1:
        raise NormlabError("dln layers are square in the input dimension: width must be 1")
    if not isinstance(depth, int) or depth < 1:
        raise NormlabError(f"dln option depth must be an int >= 1, got {depth!r}")
    hidden = _dense_stack("dense", [dim] * (depth - 1))
    return Architecture(hidden, dim, "identity", jax.nn.initializers.glorot_normal(),
                        "glorot_normal", use_bias=False, task="regression")


# name -> (builder, one-line description). A builder's options are its arguments with defaults.
ARCHITECTURES: Registry[Architecture] = Registry("model", {
    "mlp": (mlp_architecture,
            "Part 1 MLP: Dense 256-128-64 ReLU on flattened input (MNIST), norm after each"),
    "ioffe_mlp": (ioffe_mlp_architecture,
                  "BN15 Sec. 4.1 MLP: 3 x 100 sigmoid units, small Gaussian init (std 0.01)"),
    "vgg": (vgg_architecture,
            "S18/Part 2 VGG: ten 3x3 convs + Dense 96-96, ReLU, norm after each conv"),
    "lenet": (lenet_architecture,
              "d2l BNLeNet: 2 convs 5x5 + Dense 120-84, sigmoid, avg-pool, norm after each"),
    "dln": (dln_architecture,
            "S18 deep linear network: 25 square linear layers, no bias, regression"),
})


def feature_shape_after(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-example output shape of a hidden layer given its input shape (flattens for dense)."""
    if spec.kernel_size is None:
        return (spec.features,)
    h, w, _ = shape
    pad = spec.padding
    k = spec.kernel_size
    if pad == "SAME":
        h_out, w_out = h, w
    else:
        p = 0 if pad == "VALID" else int(pad)
        h_out, w_out = h + 2 * p - k + 1, w + 2 * p - k + 1
    if spec.pool is not None:
        h_out, w_out = h_out // 2, w_out // 2
    if h_out < 1 or w_out < 1:
        raise NormlabError(f"layer {spec.name} shrinks the input {h}x{w} to nothing; "
                           f"use a larger input")
    return (h_out, w_out, spec.features)


def flat_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)

# The input each model was designed for (its papers' dataset): what `normlab describe MODEL` shows
# without --dataset. A test checks every model has one and builds on it.
DEFAULT_INPUTS: dict[str, str] = {
    "mlp": "mnist",
    "ioffe_mlp": "mnist",
    "vgg": "cifar10",
    "lenet": "fashion_mnist",
    "dln": "dln_gaussian",
}
