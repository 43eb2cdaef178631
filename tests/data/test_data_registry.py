"""The registry, and the datasets that need no download: digits, synthetic, dln_gaussian."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.data import DATASETS, NORMALIZATIONS, Dataset, dataset_names, dataset_options, load_dataset
from normlab.errors import NormlabError, UnknownNameError

OFFLINE = ["digits", "synthetic", "synthetic_cifar", "synthetic_mnist", "synthetic_fashion_mnist", "dln_gaussian"]


def test_registry_lists_every_dataset_with_a_one_line_description():
    assert dataset_names() == tuple(DATASETS)
    assert set(dataset_names()) == {
        "digits", "mnist", "fashion_mnist", "cifar10", "synthetic", "synthetic_cifar", "synthetic_mnist",
        "synthetic_fashion_mnist", "dln_gaussian"
    }
    assert all(text and "\n" not in text for text in DATASETS.values())


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as caught:
        load_dataset("imagenet")
    assert caught.value.kind == "dataset" and "mnist" in caught.value.valid
    assert "imagenet" in str(caught.value) and "digits" in str(caught.value)


def test_unknown_option_and_normalization_are_rejected():
    with pytest.raises(UnknownNameError, match="unknown dataset 'digits' option 'num_train'; valid: seed"):
        load_dataset("digits", num_train=10)
    with pytest.raises(UnknownNameError, match="unknown normalization 'zca'"):
        load_dataset("digits", normalize="zca")
    with pytest.raises(UnknownNameError):
        load_dataset("dln_gaussian", normalize="standard")


def test_dataset_options_show_defaults():
    assert dataset_options("digits") == {"seed": 0, "test_size": 360}
    assert "checksums" in dataset_options("mnist")


@pytest.mark.parametrize("name", OFFLINE)
def test_every_offline_dataset_meets_the_contract(name):
    data = load_dataset(name)
    assert isinstance(data, Dataset) and data.name == name
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.x_train.shape[1:] == data.input_shape == data.x_test.shape[1:]
    if data.task == "classification":
        assert data.y_train.dtype == np.int32 and data.num_classes > 0
        assert 0 <= data.y_train.min() and data.y_train.max() < data.num_classes
        assert len(data.input_shape) == 3  # (H, W, C)
    else:
        assert data.task == "regression" and data.num_classes == 0
        assert data.y_train.dtype == np.float32
    assert np.isfinite(data.x_train).all() and data.normalization in NORMALIZATIONS


def test_dataset_rejects_inconsistent_arrays():
    x = np.zeros((4, 2, 2, 1), np.float32)
    with pytest.raises(NormlabError, match="3 labels for 4 inputs"):
        Dataset("bad", x, np.zeros(3, np.int32), x, np.zeros(4, np.int32), 10, (2, 2, 1),
                "classification", "none")


# ----------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_disjoint_and_complete():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.x_train.shape == (1437, 8, 8, 1) and first.x_test.shape == (360, 8, 8, 1)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert set(np.unique(first.y_train)) == set(range(10))

    from sklearn.datasets import load_digits

    original = load_digits().images
    # Every original image lands in exactly one split.
    keys = lambda images: {img.tobytes() for img in images.astype(np.float64)}  # noqa: E731
    unit = load_dataset("digits", normalize="none")
    assert len(unit.x_train) + len(unit.x_test) == len(original) == 1797
    assert keys(unit.x_train[..., 0]) | keys(unit.x_test[..., 0]) == keys(original)


def test_digits_seed_and_test_size_change_the_split():
    default = load_dataset("digits", normalize="none")
    other_seed = load_dataset("digits", normalize="none", seed=1)
    assert not np.array_equal(default.y_test, other_seed.y_test)
    assert load_dataset("digits", test_size=100).x_test.shape == (100, 8, 8, 1)
    with pytest.raises(NormlabError, match="test_size"):
        load_dataset("digits", test_size=0)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_sizes_balance_and_determinism():
    data = load_dataset("synthetic", num_train=40, num_test=20, num_classes=4, image_size=6,
                        channels=3)
    assert data.x_train.shape == (40, 6, 6, 3) and data.x_test.shape == (20, 6, 6, 3)
    assert np.bincount(data.y_train).tolist() == [10, 10, 10, 10]
    assert data.num_classes == 4
    again = load_dataset("synthetic", num_train=40, num_test=20, num_classes=4, image_size=6,
                         channels=3)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    with pytest.raises(NormlabError, match="num_train must be a positive integer"):
        load_dataset("synthetic", num_train=0)


def test_synthetic_test_split_does_not_depend_on_the_training_size():
    small = load_dataset("synthetic", num_train=20, normalize="unit")
    large = load_dataset("synthetic", num_train=200, normalize="unit")
    np.testing.assert_array_equal(small.x_test, large.x_test)
    assert not np.array_equal(load_dataset("synthetic", seed=1).y_test, small.y_test)


def test_synthetic_is_learnable_by_nearest_class_mean():
    data = load_dataset("synthetic")
    flat_train = data.x_train.reshape(data.num_train, -1)
    flat_test = data.x_test.reshape(data.num_test, -1)
    means = np.stack([flat_train[data.y_train == k].mean(0) for k in range(data.num_classes)])
    distances = ((flat_test[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == data.y_test).mean()
    assert accuracy > 0.9


# ----------------------------------------------------------------------------- dln_gaussian


def test_dln_gaussian_is_a_linear_map_shared_by_both_splits():
    data = load_dataset("dln_gaussian")
    assert data.x_train.shape == (1000, 10) and data.y_train.shape == (1000, 10)
    assert data.input_shape == (10,) and data.task == "regression" and data.num_classes == 0
    assert data.normalization == "none"
    # y = x @ A.T, so A.T is the least-squares solution, and the test split obeys the same A.
    a_transposed, *_ = np.linalg.lstsq(data.x_train.astype(np.float64), data.y_train, rcond=None)
    np.testing.assert_allclose(data.x_test @ a_transposed, data.y_test, atol=1e-4)
    assert not np.array_equal(data.x_train, data.x_test)  # an independent second draw
    assert abs(float(data.x_train.std()) - 1.0) < 0.05 and abs(float(a_transposed.std()) - 1) < 0.3


def test_dln_gaussian_options_and_seed():
    small = load_dataset("dln_gaussian", num_examples=50, num_test=5, dim=3, seed=7)
    assert small.x_train.shape == (50, 3) and small.x_test.shape == (5, 3)
    np.testing.assert_array_equal(small.y_train, load_dataset(
        "dln_gaussian", num_examples=50, num_test=5, dim=3, seed=7).y_train)
    assert not np.array_equal(
        small.x_train, load_dataset("dln_gaussian", num_examples=50, dim=3, seed=8).x_train
    )


def test_synthetic_cifar_is_shaped_like_cifar10():
    data = load_dataset("synthetic_cifar")
    assert data.input_shape == (32, 32, 3) and data.num_classes == 10
    assert data.x_train.shape == (2048, 32, 32, 3) and data.x_test.shape == (512, 32, 32, 3)


@pytest.mark.parametrize("name, real", [("synthetic_mnist", "mnist"), ("synthetic_fashion_mnist", "fashion_mnist")])
def test_the_mnist_stand_ins_have_the_real_datasets_shape_and_differ_from_each_other(name, real):
    from normlab.data import dataset_shape

    data = load_dataset(name)
    assert (data.input_shape, data.num_classes) == dataset_shape(real) == ((28, 28, 1), 10)
    assert data.x_train.shape == (2048, 28, 28, 1) and data.x_test.shape == (512, 28, 28, 1)
    assert set(np.unique(data.y_train)) == set(range(10))
    other = load_dataset("synthetic_fashion_mnist" if name == "synthetic_mnist" else "synthetic_mnist")
    assert not np.allclose(data.x_train, other.x_train)
