"""Settings that reach a model's own options: ``init_std`` (ioffe_mlp) and ``depth`` (dln)."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.data import load_dataset
from normlab.experiments import apply_overrides, default_config
from normlab.experiments.build import build_network_model
from normlab.experiments.config import from_dict, to_dict


def _kernels(model) -> list[np.ndarray]:
    return [np.asarray(layer.kernel.get_value(), np.float64) for layer in model.weight_layers]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_init_std_is_the_std_of_every_ioffe_mlp_kernel(norm):
    dataset = load_dataset("synthetic")  # 8x8x1: 64 inputs
    config = apply_overrides(default_config(), ["dataset=synthetic", "model=ioffe_mlp", "init_std=0.2"])
    kernels = _kernels(build_network_model(config, dataset, norm))
    assert [k.shape for k in kernels] == [(64, 100), (100, 100), (100, 100), (100, 10)]
    for kernel in kernels:
        # N(0, 0.2^2): the sample std of n draws is within 4 standard errors (0.2 / sqrt(2n)) of 0.2
        # and the mean within 4 x 0.2 / sqrt(n) of 0.
        n = kernel.size
        assert abs(kernel.std() - 0.2) < 4 * 0.2 / np.sqrt(2 * n)
        assert abs(kernel.mean()) < 4 * 0.2 / np.sqrt(n)
    # 0 asks for the model's default (0.01): the same draws, scaled by 0.01 / 0.2.
    default = _kernels(build_network_model(apply_overrides(config, ["init_std=0"]), dataset, norm))
    for kernel, small in zip(kernels, default):
        np.testing.assert_allclose(small, kernel * (0.01 / 0.2), rtol=1e-5, atol=1e-9)
    assert to_dict(config)["init_std"] == 0.2 and from_dict(to_dict(config)) == config


def test_depth_sets_the_number_of_dln_layers():
    dataset = load_dataset("dln_gaussian")
    config = apply_overrides(default_config(), ["dataset=dln_gaussian", "model=dln", "optimizer=sgd"])
    assert len(build_network_model(config, dataset, "none").weight_layers) == 25  # depth=0: the model's k
    model = build_network_model(apply_overrides(config, ["depth=4"]), dataset, "batch")
    assert [k.shape for k in _kernels(model)] == [(10, 10)] * 4
