"""Forward shapes, structural options, pairing and the model contract, on tiny models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from normlab.errors import NormlabError, UnknownNameError
from normlab.models import MODELS, build_model, model_names
from normlab.norms import NORMS

NAMES = model_names()


def batch_for(model, n=4, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, *model.input_shape))


def test_registry_lists_every_model_and_rejects_unknown_names(tiny, rngs):
    assert model_names() == ["mlp", "ioffe_mlp", "vgg", "lenet", "dln"] == list(MODELS)
    with pytest.raises(UnknownNameError, match="valid: dln, ioffe_mlp, lenet, mlp, vgg"):
        build_model("resnet", input_shape=(4,), num_classes=2, rngs=rngs())
    bad = [
        (dict(depth=3), "unknown model 'ioffe_mlp' option 'depth'; valid: init_std"),  # ioffe_mlp has no depth
        (dict(activation="swish"), "unknown activation"),
        (dict(norm_position="middle"), "unknown norm position"),
        (dict(conv_path="fft"), "unknown conv path"),
        (dict(norm_exclude=(3,)), r"norm_exclude \[3\] out of range.*0\.\.2"),
        (dict(dropout=1.0), "dropout must be"),
        (dict(norm="batch", bias_before_norm=False, norm_position="after_activation"),
         "before_activation"),
        (dict(norm="whiten-everything"), "unknown norm"),
    ]
    for options, message in bad:
        with pytest.raises(NormlabError, match=message):
            tiny("ioffe_mlp", **options)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_forward_shapes(name, norm, tiny):
    model = tiny(name, norm=norm)
    x = batch_for(model)
    for train in (True, False):
        # One jitted program compiles faster here than the eager op-by-op forward.
        y = nnx.jit(lambda m, x: m(x, train=train))(model, x)
        outputs = 10  # classes, or the dln's input dimension
        assert y.shape == (4, outputs) and bool(jnp.all(jnp.isfinite(y)))
    assert model.task == ("regression" if name == "dln" else "classification")
    with pytest.raises(NormlabError, match="built for inputs"):
        model(jnp.ones((2, 3, 3, 3)), train=False)


@pytest.mark.parametrize("norm", list(NORMS))
def test_every_registered_norm_plugs_into_a_model(norm, tiny):
    model = tiny("mlp", norm=norm, rngs=nnx.Rngs(params=0, dropout=1, noise=2))
    x = batch_for(model, n=16)
    for train in (True, False):
        y = model(x, train=train)
        assert y.shape == (16, 10) and bool(jnp.all(jnp.isfinite(y))), (norm, train)
    baseline = tiny("mlp")
    for a, b in zip(baseline.weight_layers, model.weight_layers):
        np.testing.assert_array_equal(a.kernel.get_value(), b.kernel.get_value())


# Fan-in of the first weight layer at the TINY sizes: a flattened 6x6x1 image, 16 inputs, RGB,
# grey, 10 inputs.
FIRST_FAN_IN = {"mlp": 36, "ioffe_mlp": 16, "vgg": 3, "lenet": 1, "dln": 10}
# Positions of the last conv's map when it is flattened: VGG 32x32 halved five times is 1x1;
# LeNet 28x28 (pad 2) -> 28 -> pool 14 -> 5x5 valid 10 -> pool 5, so 5x5.
POSITIONS_AT_FLATTEN = {"vgg": 1, "lenet": 25}


@pytest.mark.parametrize("name", NAMES)
def test_contract_weight_layers_and_captured_activations(name, tiny):
    model = tiny(name, norm="batch")
    layers = model.weight_layers
    assert len(layers) == len(model.activation_names) + 1
    assert all(isinstance(layer.kernel, nnx.Param) for layer in layers)
    # Forward order: each layer's fan-out feeds the next one's fan-in; the first dense after the
    # convs takes the flattened map: channels x the positions left after the pools, by hand.
    outs = [layer.kernel.shape[-1] for layer in layers]
    ins = [layer.kernel.shape[-2] for layer in layers]
    assert ins[0] == FIRST_FAN_IN[name]
    convs = sum(layer.kernel.ndim == 4 for layer in layers)
    for i in range(1, len(layers)):
        positions = POSITIONS_AT_FLATTEN[name] if i == convs and convs else 1
        assert ins[i] == outs[i - 1] * positions, (name, i)
    x = batch_for(model)
    y, captured = nnx.capture(model, nnx.Intermediate)(x, train=True)
    activations = captured["activations"].get_value()
    assert len(activations) == len(model.activation_names)
    for layer_name, value in zip(model.activation_names, activations):
        assert value.shape[0] == 4 and value.shape[-1] == layer_name_features(model, layer_name)
    # Outside nnx.capture nothing is sown and the model gains no state.
    before = jax.tree.structure(nnx.state(model))
    model(x, train=True)
    assert jax.tree.structure(nnx.state(model)) == before


def layer_name_features(model, layer_name):
    index = model.activation_names.index(layer_name)
    return model.weight_layers[index].kernel.shape[-1]


def test_vgg_activation_names_and_shapes(tiny):
    model = tiny("vgg", norm="batch")
    names = tuple(f"conv{i}" for i in range(10)) + ("dense0", "dense1")
    assert model.activation_names == names
    _, captured = nnx.capture(model, nnx.Intermediate)(batch_for(model, n=2), train=True)
    shapes = [a.shape for a in captured["activations"].get_value()]
    sizes = [32, 32, 16, 16, 8, 8, 4, 4, 2, 2]  # input to each conv's ReLU, before pooling
    widths = [4, 4, 8, 8, 16, 16, 32, 32, 32, 32]
    assert shapes == [(2, s, s, c) for s, c in zip(sizes, widths)] + [(2, 96), (2, 96)]


@pytest.mark.parametrize("name", NAMES)
def test_pairing_baseline_and_twin_share_weights(name, tiny, rngs):
    def flat_params(model):
        return {path: v.get_value() for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}

    base = flat_params(tiny(name, rngs(7)))
    twin = flat_params(tiny(name, rngs(7), norm="batch", dropout=0.25))
    shared = base.keys() & twin.keys()
    kernels = [p for p in shared if p[-1] == "kernel"]
    assert len(kernels) == len(tiny(name).weight_layers)
    for path in shared:
        np.testing.assert_array_equal(base[path], twin[path], err_msg=str(path))
    other = flat_params(tiny(name, rngs(8)))  # another seed, other weights
    assert not np.array_equal(base[kernels[0]], other[kernels[0]])


def test_pairing_holds_with_a_single_default_stream(tiny):
    baseline = tiny("mlp", nnx.Rngs(3))
    twin = tiny("mlp", nnx.Rngs(3), norm="batch", dropout=0.5)
    for a, b in zip(baseline.weight_layers, twin.weight_layers):
        np.testing.assert_array_equal(a.kernel.get_value(), b.kernel.get_value())


def test_norm_exclude_and_placement(tiny):
    model = tiny("mlp", norm="batch", norm_exclude=(1,))
    assert [layer.norm_name for layer in model.hidden] == ["batch", "none", "batch"]
    x = batch_for(model)

    def pre_and_out(model):
        layer = model.hidden[0]
        x0 = x.reshape(x.shape[0], -1)
        z = x0 @ layer.linear.kernel.get_value() + layer.linear.bias.get_value()
        out, pre = layer(x0, train=True)
        return z, pre, out

    def batch_norm(v):  # a fresh BN in train mode: gamma 1, beta 0
        return (v - v.mean(0)) / jnp.sqrt(v.var(0) + 1e-5)

    z, pre, out = pre_and_out(tiny("mlp", norm="batch"))
    np.testing.assert_allclose(pre, batch_norm(z), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, jax.nn.relu(batch_norm(z)), rtol=1e-4, atol=1e-5)
    z, pre, out = pre_and_out(tiny("mlp", norm="batch", norm_position="after_activation"))
    np.testing.assert_allclose(pre, z, rtol=1e-6)  # the nonlinearity's input is the raw z
    np.testing.assert_allclose(out, batch_norm(jax.nn.relu(z)), rtol=1e-4, atol=1e-4)


def test_dropout_only_in_train_mode(tiny):
    plain = tiny("mlp", width=1.0)
    dropped = tiny("mlp", width=1.0, dropout=0.5)
    x = batch_for(plain)
    eval_out = dropped(x, train=False)
    np.testing.assert_allclose(eval_out, plain(x, train=False), rtol=1e-6)
    first, second = dropped(x, train=True), dropped(x, train=True)
    assert not np.allclose(first, eval_out) and not np.allclose(first, second)
    with pytest.raises(NormlabError, match="'dropout' rng stream"):
        tiny("mlp", nnx.Rngs(params=0), dropout=0.5)


def test_ioffe_mlp_init_std_and_activation_override(tiny):
    model = tiny("ioffe_mlp", width=1.0)
    kernel = model.weight_layers[0].kernel.get_value()
    assert abs(float(kernel.std()) - 0.01) < 0.001  # N(0, 0.01^2), 16 x 100 draws
    wide = tiny("ioffe_mlp", width=1.0, init_std=0.1)
    np.testing.assert_allclose(wide.weight_layers[0].kernel.get_value(), 10 * kernel, rtol=1e-5)
    assert {layer.activation for layer in tiny("lenet", activation="relu").hidden} == {"relu"}


def test_capture_inside_jit_over_split_state(tiny):
    """The way the train stage runs a model: split once, merge inside jax.jit, capture there."""
    model = tiny("mlp", norm="batch")
    graphdef, state = nnx.split(model)
    x = batch_for(model)

    @jax.jit
    def forward(state, x):
        merged = nnx.merge(graphdef, state, copy=True)
        y, captured = nnx.capture(merged, nnx.Intermediate)(x, train=True)
        return y, captured["activations"].get_value(), nnx.state(merged, nnx.BatchStat)

    y, activations, stats = forward(state, x)
    np.testing.assert_allclose(y, model(x, train=True), rtol=1e-5, atol=1e-6)
    assert [a.shape for a in activations] == [(4, 32), (4, 16), (4, 8)]
    assert jax.tree.structure(stats) == jax.tree.structure(nnx.state(model, nnx.BatchStat))
