"""augment_cifar: shapes, determinism in (seed, step), and that crops and flips are exact."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.data import augment_cifar
from normlab.errors import NormlabError


@pytest.fixture
def images():
    return np.random.default_rng(0).standard_normal((64, 8, 8, 3)).astype(np.float32)


def test_shape_and_dtype_are_kept(images):
    out = augment_cifar(images, seed=0, step=0)
    assert out.shape == images.shape and out.dtype == images.dtype


def test_deterministic_in_seed_and_step(images):
    np.testing.assert_array_equal(
        augment_cifar(images, seed=1, step=5), augment_cifar(images, seed=1, step=5)
    )
    assert not np.array_equal(
        augment_cifar(images, seed=1, step=5), augment_cifar(images, seed=1, step=6)
    )
    assert not np.array_equal(
        augment_cifar(images, seed=1, step=5), augment_cifar(images, seed=2, step=5)
    )


def test_flip_only_gives_each_image_or_its_mirror(images):
    out = augment_cifar(images, seed=0, step=0, pad=0)
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1, :], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert same.any() and mirrored.any()  # 64 coin flips: both outcomes occur


def test_crop_only_gives_a_window_of_the_zero_padded_image(images):
    pad = 4
    out = augment_cifar(images, seed=0, step=0, pad=pad, flip=False)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for index in range(len(images)):
        windows = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(out[index], padded[index, dy : dy + 8, dx : dx + 8])
        ]
        assert windows, f"image {index} is not a crop of its padded original"
        offsets.update(windows)
    assert len(offsets) > 10  # offsets are spread over the 9x9 possibilities


def test_no_pad_and_no_flip_is_the_identity(images):
    np.testing.assert_array_equal(augment_cifar(images, seed=0, step=0, pad=0, flip=False), images)


def test_input_must_be_a_batch_of_images():
    with pytest.raises(NormlabError, match=r"\(N, H, W, C\)"):
        augment_cifar(np.zeros((8, 8, 3)), seed=0, step=0)


@pytest.mark.parametrize("pad", [1, 2, 4])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_offsets_cover_the_whole_grid_from_0_to_2_pad(pad, flip):
    count, size = 600, 5
    # every pixel distinct and non-zero, so a window identifies its offset (and flip) uniquely
    images = (np.arange(count * size * size, dtype=np.float32).reshape(count, size, size, 1) + 1)
    out = augment_cifar(images, seed=3, step=0, pad=pad, flip=flip)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for index in range(count):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for mirrored in (False, True)
                   if np.array_equal(out[index], padded[index, dy:dy + size, dx:dx + size][:, ::-1 if mirrored else 1])]
        assert len(matches) == 1, f"image {index} is not exactly one window of its padded original"
        seen.add(matches[0])
    grid = {(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}
    assert seen == grid  # both ends, 0 and 2 * pad, included, in rows and columns
