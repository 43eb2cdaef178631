"""Side-by-side timing for the benchmarks: interleaved A/B repeats and medians.

These machines are noisy: absolute times drift from run to run, so every benchmark times its
candidates alternately within each repeat (the same noise hits both) and reports ratios of
medians rather than times alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def time_call(fn: Callable[[], object]) -> float:
    """Seconds for one call of ``fn``, waiting for its device results."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved_times(
    candidates: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call of each candidate, the candidates timed in alternation ``repeats`` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            time_call(fn)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(time_call(fn))
    return samples


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in alternation ``repeats`` times."""
    samples = interleaved_times(candidates, repeats=repeats, warmup=warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(title: str, rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
