"""BatchIterator: epochs are permutations, indices depend only on (seed, step)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from normlab.data import BatchIterator
from normlab.errors import NormlabError


def epoch_batches(iterator: BatchIterator, epoch: int) -> list[np.ndarray]:
    first = epoch * iterator.steps_per_epoch
    return [iterator.indices_at(step) for step in range(first, first + iterator.steps_per_epoch)]


def test_without_drop_last_each_epoch_visits_every_example_once_and_last_batch_is_smaller():
    iterator = BatchIterator(10, 4, seed=3, drop_last=False)
    assert iterator.steps_per_epoch == 3
    for epoch in range(3):
        batches = epoch_batches(iterator, epoch)
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(np.concatenate(batches).tolist()) == list(range(10))


def test_with_drop_last_batches_are_full_and_disjoint():
    iterator = BatchIterator(10, 4, seed=3)
    assert iterator.steps_per_epoch == 2
    batches = epoch_batches(iterator, 0)
    assert all(len(b) == 4 for b in batches)
    assert len(set(np.concatenate(batches).tolist())) == 8


def test_exact_multiple_has_no_partial_batch():
    assert BatchIterator(12, 4, seed=0, drop_last=False).steps_per_epoch == 3


def test_same_step_same_indices_regardless_of_history():
    fresh = BatchIterator(100, 7, seed=5)
    used = BatchIterator(100, 7, seed=5)
    for step in (40, 3, 1000):  # out of order, as after a resume
        used.indices_at(step)
    for step in (0, 3, 14, 40, 1000):
        np.testing.assert_array_equal(fresh.indices_at(step), used.indices_at(step))


def test_different_epochs_and_seeds_differ():
    iterator = BatchIterator(100, 10, seed=0)
    epoch0, epoch1 = np.concatenate(epoch_batches(iterator, 0)), np.concatenate(
        epoch_batches(iterator, 1))
    assert not np.array_equal(epoch0, epoch1)
    assert sorted(epoch0) == sorted(epoch1) == list(range(100))
    other_seed = BatchIterator(100, 10, seed=1)
    assert not np.array_equal(iterator.indices_at(0), other_seed.indices_at(0))


def test_without_shuffle_the_order_is_the_data_order():
    iterator = BatchIterator(5, 2, seed=0, shuffle=False, drop_last=False)
    assert [b.tolist() for b in epoch_batches(iterator, 1)] == [[0, 1], [2, 3], [4]]


def test_iteration_matches_indices_at():
    iterator = BatchIterator(9, 4, seed=2, drop_last=False)
    for step, batch in enumerate(itertools.islice(iterator, 7)):
        np.testing.assert_array_equal(batch, iterator.indices_at(step))
    assert iterator.epoch_of(6) == 2


def test_returned_indices_can_be_modified_without_affecting_later_calls():
    iterator = BatchIterator(8, 4, seed=0)
    batch = iterator.indices_at(0)
    expected = batch.copy()
    batch[:] = 0
    np.testing.assert_array_equal(iterator.indices_at(0), expected)


@pytest.mark.parametrize(
    "arguments",
    [dict(num_examples=0, batch_size=1), dict(num_examples=4, batch_size=5),
     dict(num_examples=4, batch_size=2, seed=-1)],
)
def test_invalid_arguments_are_rejected(arguments):
    with pytest.raises(NormlabError):
        BatchIterator(**{"seed": 0, **arguments})
    with pytest.raises(NormlabError, match="step"):
        BatchIterator(4, 2, seed=0).indices_at(-1)
