"""normlab's models: the five architectures the papers train (the seed notebooks' MLP and VGG, BN15's
sigmoid MLP, d2l's BNLeNet, S18's deep linear network) with pluggable norms.

``build_model(name, *, input_shape, num_classes, norm="none", rngs, ...)`` returns an
``nnx.Module`` that meets the models contract of docs/INTERFACES.md: ``__call__(x, *, train)``,
``weight_layers`` in forward order, and ``activations`` sown inside
``nnx.capture(model, nnx.Intermediate)`` (one entry per name in ``activation_names``).
"""

from normlab.models.architectures import ARCHITECTURES, DEFAULT_INPUTS, Architecture, LayerSpec
from normlab.models.build import BIAS_REMOVAL_LAYERS, MODELS, build_model, model_names, model_options
from normlab.models.conv import CONV_PATHS, Conv, conv2d, resolve_conv_path
from normlab.models.describe import (
    LayerRow,
    abstract_model,
    count_params,
    count_stats,
    describe_model,
    format_description,
)
from normlab.models.layers import ACTIVATIONS, NORM_POSITIONS, Dense, HiddenLayer, Network

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "DEFAULT_INPUTS",
    "Architecture",
    "BIAS_REMOVAL_LAYERS",
    "CONV_PATHS",
    "Conv",
    "Dense",
    "HiddenLayer",
    "LayerRow",
    "LayerSpec",
    "MODELS",
    "NORM_POSITIONS",
    "Network",
    "abstract_model",
    "build_model",
    "conv2d",
    "count_params",
    "count_stats",
    "describe_model",
    "format_description",
    "model_names",
    "model_options",
    "resolve_conv_path",
]
