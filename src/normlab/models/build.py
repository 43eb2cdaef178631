"""``build_model``: the model registry, structural options and the pairing-safe init order.

Pairing. A baseline and its BN twin must start from identical shared weights. ``build_model``
therefore draws exactly one key from the ``params`` stream, first, and gives weight layer ``i``
(forward order, counting the output layer) the key ``fold_in(params_key, i)``. Nothing else reads
``params``: norms use ``noise`` (S18's noisy BN) and dropout uses ``dropout``. So the weights
depend only on the params seed and the layer index -- not on the norm, its options, dropout,
bias removal or the depth beyond layer ``i`` -- even with a single-stream ``nnx.Rngs(seed)``.
Biases start at 0, so dropping one (``bias_before_norm=False``) shifts nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
from flax import nnx

from normlab.errors import NormlabError, check_name
from normlab.models.architectures import (
    ARCHITECTURES,
    Architecture,
    feature_shape_after,
    flat_size,
)
from normlab.models.conv import CONV_PATHS, Conv
from normlab.models.layers import ACTIVATIONS, NORM_POSITIONS, Dense, HiddenLayer, Network
from normlab.norms import NORMS, make_norm

# Which weight layers bias_before_norm=False takes the bias from (d2l ex. 1 removes it in the dense
# layers, then in the conv layers, to compare).
BIAS_REMOVAL_LAYERS = ("all", "dense", "conv")

MODELS: dict[str, str] = ARCHITECTURES.descriptions()


def model_names() -> list[str]:
    """The built-in model names, in registry order."""
    return list(MODELS)


def model_options(name: str) -> dict[str, Any]:
    """The model-specific options of ``name`` and their defaults (e.g. ``{"depth": 25}``)."""
    return ARCHITECTURES.options(name)


def _check_exclude(norm_exclude: Iterable[int], num_hidden: int, names) -> frozenset[int]:
    excluded = frozenset(norm_exclude)
    bad = sorted(i for i in excluded if not (isinstance(i, int) and 0 <= i < num_hidden))
    if bad:
        raise NormlabError(
            f"norm_exclude {bad} out of range: hidden layers are 0..{num_hidden - 1} "
            f"({', '.join(names)})"
        )
    return excluded


def _weight_layer(spec, in_shape, *, key, arch: Architecture, use_bias: bool, conv_path: str):
    if spec.kernel_size is None:
        return Dense(flat_size(in_shape), spec.features, key=key, kernel_init=arch.kernel_init,
                     use_bias=use_bias)
    return Conv(in_shape[-1], spec.features, spec.kernel_size, key=key,
                kernel_init=arch.kernel_init, padding=spec.padding, use_bias=use_bias,
                path=conv_path)


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    norm: str = "none",
    norm_options: Mapping[str, Any] | None = None,
    rngs: nnx.Rngs,
    activation: str | None = None,
    width: float = 1.0,
    bias_before_norm: bool = True,
    bias_removed_from: str = "all",
    norm_exclude: Iterable[int] = (),
    norm_position: str = "before_activation",
    dropout: float = 0.0,
    conv_path: str = "auto",
    **options: Any,
) -> Network:
    """Build a registered model (see ``MODELS``) with a pluggable norm.

    Args:
      name: one of ``model_names()``.
      input_shape: per-example shape, ``(H, W, C)`` for images or ``(D,)`` for vectors.
      num_classes: output size of classifiers; for ``dln`` 0 (regression) or D.
      norm: a ``normlab.norms`` name; placed after each hidden layer's linear map.
      norm_options: keyword options for ``make_norm`` (e.g. momentum, eps); unused by layers
        without a norm, so a baseline may be built with its twin's options.
      rngs: ``nnx.Rngs`` with a ``params`` stream (and ``dropout`` when ``dropout > 0``,
        ``noise`` for the noisy norm; a ``default`` stream serves any missing one).
      activation: overrides the model's default nonlinearity (``ACTIVATIONS``).
      width: multiplies hidden widths (VGG: the convs only; must be 1 for ``dln``).
      bias_before_norm: False drops the bias of each layer a norm directly follows (d2l ex. 1;
        a batch norm's mean subtraction cancels it). Layers without a norm keep theirs.
      bias_removed_from: which layers ``bias_before_norm=False`` applies to: ``"all"``, only the
        ``"dense"`` ones or only the ``"conv"`` ones (``BIAS_REMOVAL_LAYERS``).
      norm_exclude: indices into ``activation_names`` of hidden layers that get no norm (d2l ex. 3).
      norm_position: ``"before_activation"`` (BN15) or ``"after_activation"``.
      dropout: rate of a dropout after each hidden activation (train mode only; d2l ex. 6).
      conv_path: one of ``CONV_PATHS`` (``"auto"``, ``"xla"``, ``"im2col"``, ``"shifted"``,
        ``"onednn"``; see ``normlab.models.conv``).
      **options: model-specific options, see ``model_options(name)`` (``dln``: depth;
        ``ioffe_mlp``: init_std; ``vgg``: norm_dense; ``lenet``: first_padding).

    Returns: a :class:`~normlab.models.layers.Network` meeting the models contract.
    """
    ARCHITECTURES.check_options(name, options)
    check_name("norm position", norm_position, NORM_POSITIONS)
    check_name("conv path", conv_path, CONV_PATHS)
    check_name("bias removal layers", bias_removed_from, BIAS_REMOVAL_LAYERS)
    if activation is not None:
        check_name("activation", activation, ACTIVATIONS)
    if not (isinstance(width, (int, float)) and width > 0):
        raise NormlabError(f"width must be a number > 0, got {width!r}")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise NormlabError(f"dropout must be a rate in [0, 1), got {dropout!r}")
    if not bias_before_norm and norm_position != "before_activation":
        raise NormlabError("bias_before_norm=False removes the bias a norm makes redundant; that "
                           "needs norm_position='before_activation'")
    if dropout > 0 and "dropout" not in rngs and "default" not in rngs:
        raise NormlabError("dropout > 0 needs a 'dropout' rng stream: "
                           "nnx.Rngs(params=..., dropout=...)")
    input_shape = tuple(int(d) for d in input_shape)

    arch = ARCHITECTURES.build(name, input_shape, num_classes, width, **options)
    names = tuple(spec.name for spec in arch.hidden)
    excluded = _check_exclude(norm_exclude, len(arch.hidden), names)
    check_name("norm", norm, NORMS)
    act = activation or arch.activation

    if "params" not in rngs and "default" not in rngs:
        raise NormlabError("build_model needs a 'params' rng stream: nnx.Rngs(params=seed, ...)")
    # The only draw from the params stream, before any norm or dropout touches `rngs`.
    params_key = rngs.params()
    hidden, shape = [], input_shape
    for i, spec in enumerate(arch.hidden):
        normed = norm != "none" and spec.normable and i not in excluded
        kind = "dense" if spec.kernel_size is None else "conv"
        removed = not bias_before_norm and normed and bias_removed_from in ("all", kind)
        linear = _weight_layer(spec, shape, key=jax.random.fold_in(params_key, i), arch=arch,
                               use_bias=arch.use_bias and not removed,
                               conv_path=conv_path)
        norm_name = norm if normed else "none"
        norm_module = make_norm(norm_name, spec.features, rngs=rngs,
                                **(dict(norm_options or {}) if normed else {}))
        hidden.append(HiddenLayer(
            linear, norm_module, norm_name=norm_name, activation=act,
            norm_position=norm_position, pool=spec.pool,
            dropout=nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None,
        ))
        shape = feature_shape_after(spec, shape)
    head = Dense(flat_size(shape), arch.outputs, key=jax.random.fold_in(params_key, len(hidden)),
                 kernel_init=arch.kernel_init, use_bias=arch.use_bias)
    return Network(name, hidden, head, input_shape=input_shape, activation_names=names,
                   task=arch.task)
