"""Exact parameter counts (the papers' and the seed notebooks' own counts, e.g. Part 2's VGG: 9,464,522
without a norm, 9,476,298 with BN), computed from shapes only (nnx.eval_shape)."""

from __future__ import annotations

import pytest

from normlab.models import abstract_model, count_params, count_stats, describe_model, format_description


def counts(name, norm, **kwargs):
    model = abstract_model(name, norm=norm, **kwargs)
    return count_params(model), count_stats(model)


def dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def test_mlp_counts_match_part1():
    assert counts("mlp", "none", input_shape=(784,), num_classes=10) == (242_762, 0)
    # BN: scale and bias per hidden unit; running mean/var are BatchStats, not params.
    assert counts("mlp", "batch", input_shape=(28, 28, 1), num_classes=10) == (243_658, 896)


def test_vgg_counts_match_part2_and_the_bn_placement():
    base, _ = counts("vgg", "none", input_shape=(32, 32, 3), num_classes=10)
    bn_params, bn_stats = counts("vgg", "batch", input_shape=(32, 32, 3), num_classes=10)
    assert base == 9_464_522
    conv_channels = 64 + 64 + 128 + 128 + 256 + 256 + 4 * 512
    assert bn_params == base + 2 * conv_channels == 9_470_410
    # The notebook's 9,476,298 counts BN after every conv with scale, bias, mean and var.
    assert bn_stats == 2 * conv_channels
    assert bn_params + bn_stats == 9_476_298


def test_small_model_counts_by_hand():
    ioffe = dense(784, 100) + 2 * dense(100, 100) + dense(100, 10)
    assert counts("ioffe_mlp", "none", input_shape=(784,), num_classes=10)[0] == ioffe == 99_710
    assert counts("ioffe_mlp", "batch", input_shape=(784,), num_classes=10)[0] == ioffe + 600

    lenet = conv(5, 1, 6) + conv(5, 6, 16) + dense(16 * 5 * 5, 120) + dense(120, 84) + dense(84, 10)
    assert lenet == 61_706
    for shape in [(28, 28, 1), (32, 32, 1)]:  # padding 2 on 28x28 gives LeNet-5's 32x32 frame
        assert counts("lenet", "none", input_shape=shape, num_classes=10)[0] == lenet
        assert counts("lenet", "batch", input_shape=shape, num_classes=10)[0] == (
            lenet + 2 * (6 + 16 + 120 + 84))
    d2l_bn_lenet = lenet - dense(400, 120) + dense(16 * 4 * 4, 120)  # d2l 8.5: no padding
    assert counts("lenet", "none", input_shape=(28, 28, 1), num_classes=10,
                  first_padding=0)[0] == d2l_bn_lenet == 44_426

    assert counts("dln", "none", input_shape=(10,), num_classes=0) == (25 * 100, 0)
    assert counts("dln", "batch", input_shape=(10,), num_classes=0)[0] == 25 * 100 + 24 * 20
    assert counts("dln", "none", input_shape=(10,), num_classes=10, depth=3)[0] == 300


def test_describe_full_vgg_from_shapes():
    rows = describe_model(abstract_model("vgg", input_shape=(32, 32, 3), num_classes=10,
                                         norm="batch"))
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows][:2] == ["input", "conv0"] and rows[-1].name == "total"
    assert by_name["conv1"].output_shape == (16, 16, 64)  # after the max-pool
    assert by_name["conv9"].output_shape == (1, 1, 512)
    assert by_name["output"].output_shape == (10,)
    assert sum(r.params for r in rows[:-1]) == rows[-1].params == 9_470_410
    assert rows[-1].stats == 5_888
    assert by_name["conv0"].kind == "conv3x3 > batch > relu"
    table = format_description(rows)
    assert "9,470,410" in table and "maxpool" in table
    assert len(table.splitlines()) == len(rows) + 4  # header, rule, rule before total, footnote
    assert table.splitlines()[-1].endswith("params + stats = 9,476,298")  # the seed notebook's BN count


@pytest.mark.parametrize("name", ["mlp", "vgg"])
def test_bias_before_norm_removal_counts(name):
    shape = (32, 32, 3)
    base = counts(name, "batch", input_shape=shape, num_classes=10)[0]
    no_bias = counts(name, "batch", input_shape=shape, num_classes=10, bias_before_norm=False)[0]
    removed = 256 + 128 + 64 if name == "mlp" else 2944  # one bias per normalized feature
    assert base - no_bias == removed
    # Without a norm nothing is removed: the baseline keeps its biases.
    assert counts(name, "none", input_shape=shape, num_classes=10, bias_before_norm=False)[0] == (
        counts(name, "none", input_shape=shape, num_classes=10)[0])


@pytest.mark.parametrize("where, removed", [("all", 6 + 16 + 120 + 84), ("dense", 120 + 84), ("conv", 6 + 16)])
def test_bias_removal_from_dense_or_conv_layers_only(where, removed):
    """d2l ex. 1 on BNLeNet: the biases of the normalized dense layers, of the conv layers, or of all."""
    shape = (28, 28, 1)
    base = counts("lenet", "batch", input_shape=shape, num_classes=10)[0]
    assert base - counts("lenet", "batch", input_shape=shape, num_classes=10, bias_before_norm=False,
                         bias_removed_from=where)[0] == removed
    # bias_removed_from alone changes nothing: it says where bias_before_norm=False applies
    assert counts("lenet", "batch", input_shape=shape, num_classes=10, bias_removed_from=where)[0] == base
