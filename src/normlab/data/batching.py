"""Seeded mini-batch indices that depend only on (seed, step).

Step ``t`` belongs to epoch ``e = t // steps_per_epoch`` at position ``p = t % steps_per_epoch``;
its batch is ``order_e[p*B : (p+1)*B]`` where ``order_e = default_rng((seed, e)).permutation(N)``
(or ``arange(N)`` without shuffling). Nothing is carried from step to step, so a resumed run needs
only its step, and the two networks of a pair, given the same seed, see the same batches.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from normlab.errors import NormlabError


@functools.lru_cache(maxsize=4)
def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples: a permutation of ``range(N)``.

    Cached (read-only) because consecutive steps of an epoch all slice the same permutation.
    """
    if shuffle:
        order = np.random.default_rng((seed, epoch)).permutation(num_examples)
    else:
        order = np.arange(num_examples)
    order.setflags(write=False)
    return order


@dataclass(frozen=True)
class BatchIterator:
    """Mini-batch indices for step-based training.

    Args:
        num_examples: N, the size of the split being sampled.
        batch_size: B.
        seed: non-negative integer; each epoch's order is drawn from ``default_rng((seed, epoch))``.
        shuffle: False visits the examples in order every epoch.
        drop_last: True drops the last ``N mod B`` examples of each epoch's order (every batch has
            exactly B indices; different examples are dropped each epoch); False keeps them as a
            smaller final batch.

    Iterating yields the batches of epoch 0, then 1, ..., forever.
    """

    num_examples: int
    batch_size: int
    seed: int
    shuffle: bool = True
    drop_last: bool = True

    def __post_init__(self) -> None:
        if self.num_examples < 1 or self.batch_size < 1:
            raise NormlabError(
                f"num_examples and batch_size must be positive, got {self.num_examples} "
                f"and {self.batch_size}"
            )
        if self.drop_last and self.batch_size > self.num_examples:
            raise NormlabError(
                f"batch_size {self.batch_size} exceeds the {self.num_examples} examples, so "
                "drop_last=True would leave no batch; use a smaller batch or drop_last=False"
            )
        if self.seed < 0:
            raise NormlabError(f"seed must be a non-negative integer, got {self.seed}")

    @property
    def steps_per_epoch(self) -> int:
        """``N // B`` with drop_last, else ``ceil(N / B)``."""
        full, remainder = divmod(self.num_examples, self.batch_size)
        return full if self.drop_last or remainder == 0 else full + 1

    def epoch_of(self, step: int) -> int:
        """The epoch that step ``step`` (0-based) belongs to."""
        return step // self.steps_per_epoch

    def indices_at(self, step: int) -> np.ndarray:
        """Example indices of the batch at ``step`` (0-based): int64 (B,), or fewer for the last
        batch of an epoch when drop_last is False. A pure function of (seed, step)."""
        if step < 0:
            raise NormlabError(f"step must be >= 0, got {step}")
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.num_examples, self.seed, epoch, self.shuffle)
        start = position * self.batch_size
        return order[start : start + self.batch_size].copy()

    def __iter__(self):
        step = 0
        while True:
            yield self.indices_at(step)
            step += 1
