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


def test_power_law_fields_have_the_stated_spectrum_and_unit_scale():
    """Radially averaged power of the fields falls as |f|^(-2 exponent): the log-log slope."""
    from normlab.data.synthetic import power_law_fields

    for exponent in (0.5, 1.0, 1.5):
        fields = power_law_fields(np.random.default_rng(0), 64, 32, 1, exponent)
        assert fields.shape == (64, 32, 32, 1) and fields.dtype == np.float32
        np.testing.assert_allclose(fields.mean(axis=(1, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(fields.std(axis=(1, 2, 3)), 1, rtol=1e-4)
        power = np.mean(np.abs(np.fft.fft2(fields[..., 0])) ** 2, axis=0)
        freq = np.fft.fftfreq(32)
        radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
        ring = (radius > 0.05) & (radius < 0.45)  # away from the floored centre and the corners
        slope = np.polyfit(np.log(radius[ring]), np.log(power[ring]), 1)[0]
        assert abs(slope + 2 * exponent) < 0.15, (exponent, slope)


def test_synthetic_cifar_examples_are_shifted_mirrored_scaled_templates_of_their_class():
    """Without clutter and noise every image is a * roll(flip?(T)) for one of its class's templates."""
    from normlab.data.synthetic import shifted

    data = load_dataset("synthetic_cifar", normalize="none", num_train=60, num_test=20, background=0.0,
                        noise=0.0, max_shift=3)
    again = load_dataset("synthetic_cifar", normalize="none", num_train=60, num_test=20, background=0.0,
                         noise=0.0, max_shift=3)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    # The templates are the examples themselves: find, for each pair of same-class examples, a
    # roll and flip mapping one onto a multiple of the other; every class has at most 2 templates.
    images = data.x_train.astype(np.float64)
    for label in range(10):
        members = images[data.y_train == label]
        groups: list[np.ndarray] = []  # one representative per template seen
        for image in members:
            for representative in groups:
                if _matches_by_roll_flip_scale(image, representative, shifted):
                    break
            else:
                groups.append(image)
        assert 1 <= len(groups) <= 2, (label, len(groups))
    other = images[data.y_train == 0][0]
    assert not any(_matches_by_roll_flip_scale(other, image, shifted) for image in images[data.y_train == 1])


def _matches_by_roll_flip_scale(image, reference, shifted) -> bool:
    for candidate in (reference, reference[:, ::-1]):
        for dy in range(-6, 7):
            for dx in range(-6, 7):
                moved = shifted(candidate[None], np.array([dy]), np.array([dx]))[0]
                scale = np.sum(moved * image) / np.sum(moved * moved)
                if np.allclose(image, scale * moved, rtol=1e-4, atol=1e-5):
                    return True
    return False


def test_synthetic_cifar_splits_and_options():
    base = load_dataset("synthetic_cifar", num_train=100, num_test=30)
    more = load_dataset("synthetic_cifar", num_train=200, num_test=30, normalize="none")
    raw = load_dataset("synthetic_cifar", num_train=100, num_test=30, normalize="none")
    np.testing.assert_array_equal(raw.x_test, more.x_test)  # the test split does not depend on num_train
    np.testing.assert_array_equal(np.bincount(base.y_train), [10] * 10)
    np.testing.assert_allclose(base.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(base.x_train.std(axis=(0, 1, 2)), 1, rtol=1e-4)
    for option, value in (("max_shift", 40), ("background", -1.0), ("radius", 0.0), ("contrast", (2.0, 1.0))):
        with pytest.raises(NormlabError, match=option):
            load_dataset("synthetic_cifar", **{option: value})
