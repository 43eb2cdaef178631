"""Normalization maths against plain numpy, and the conventional constants per dataset."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.data import load_dataset
from normlab.data.normalization import channel_mean_std, normalize_splits
from normlab.errors import NormlabError


@pytest.fixture
def raw_pair():
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (6000, 2, 2, 3)).astype(np.uint8),  # > one 4096-image chunk
        rng.integers(0, 256, (7, 2, 2, 3)).astype(np.uint8),
    )


def test_channel_mean_std_matches_numpy(raw_pair):
    train, _ = raw_pair
    mean, std = channel_mean_std(train)
    np.testing.assert_allclose(mean, train.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, train.std(axis=(0, 1, 2)), rtol=1e-9)


def test_unit_and_none(raw_pair):
    train, test = raw_pair
    unit_train, unit_test = normalize_splits(train, test, "unit", pixel_max=255)
    np.testing.assert_allclose(unit_test, test / 255.0, rtol=1e-6)
    assert unit_train.dtype == np.float32 and 0 <= unit_train.min() and unit_train.max() <= 1
    none_train, _ = normalize_splits(train, test, "none", pixel_max=255)
    np.testing.assert_array_equal(none_train, train.astype(np.float32))


def test_standard_with_conventional_constants(raw_pair):
    train, test = raw_pair
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    x_train, x_test = normalize_splits(
        train, test, "standard", pixel_max=255, standard_mean=mean, standard_std=std
    )
    np.testing.assert_allclose(x_test, (test / 255.0 - mean) / std, rtol=1e-5, atol=1e-6)
    assert x_train.shape == train.shape


def test_standard_without_constants_uses_training_statistics(raw_pair):
    train, test = raw_pair
    x_train, x_test = normalize_splits(train, test, "standard", pixel_max=255)
    np.testing.assert_allclose(x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=(0, 1, 2)), 1, rtol=1e-4)
    unit = train / 255.0
    expected = (test / 255.0 - unit.mean(axis=(0, 1, 2))) / unit.std(axis=(0, 1, 2))
    np.testing.assert_allclose(x_test, expected, rtol=1e-5, atol=1e-5)


def test_standardize_max1_uses_training_constants_for_both_splits(raw_pair):
    train, test = raw_pair
    x_train, x_test = normalize_splits(train, test, "standardize_max1", pixel_max=255)
    assert x_train.max() == pytest.approx(1.0, abs=1e-6)
    z_train = (train - train.mean(axis=(0, 1, 2))) / train.std(axis=(0, 1, 2))
    expected_test = (test - train.mean(axis=(0, 1, 2))) / train.std(axis=(0, 1, 2)) / z_train.max()
    np.testing.assert_allclose(x_test, expected_test, rtol=1e-5, atol=1e-5)


def test_inputs_are_not_modified(raw_pair):
    train, test = raw_pair
    float_train = train.astype(np.float32)
    normalize_splits(float_train, test, "standard", pixel_max=255)
    np.testing.assert_array_equal(float_train, train.astype(np.float32))


def test_constant_channel_cannot_be_standardized():
    constant = np.ones((3, 2, 2, 1))
    with pytest.raises(NormlabError, match="constant"):
        normalize_splits(constant, constant, "standard", pixel_max=1)


def test_mnist_uses_its_conventional_constants(mirror, write_idx_dataset):
    fake = write_idx_dataset(mirror.root / "mnist")
    data = load_dataset("mnist", checksums=fake.checksums)
    expected = (fake.test_images / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(data.x_test[..., 0], expected, rtol=1e-5, atol=1e-5)


def test_fashion_mnist_uses_its_conventional_constants(mirror, write_idx_dataset):
    fake = write_idx_dataset(mirror.root / "fashion_mnist")
    data = load_dataset("fashion_mnist", checksums=fake.checksums)
    expected = (fake.test_images / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(data.x_test[..., 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["standard", "unit", "standardize_max1", "none"])
def test_digits_records_each_normalization(method):
    data = load_dataset("digits", normalize=method)
    assert data.normalization == method
    raw = load_dataset("digits", normalize="none").x_train
    assert raw.max() == 16  # sklearn's pixel scale
    if method == "unit":
        np.testing.assert_allclose(data.x_train, raw / 16)
    if method == "standardize_max1":
        assert data.x_train.max() == pytest.approx(1.0)
