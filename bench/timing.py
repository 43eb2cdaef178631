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

# What a benchmark can time with: wall-clock seconds, or the CPU seconds of all the process's
# threads. On a machine loaded by other jobs the wall clock counts the time this process waits to
# be scheduled; CPU time does not, so with the process pinned to one core (``taskset -c 1``, one
# thread for XLA and PyTorch alike) it measures the work alone. With several threads CPU time
# also counts threads spinning while they wait, so it is only a fair clock pinned to one core.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_call(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds (of ``clock``) for one call of ``fn``, waiting for its device results."""
    start = clock()
    jax.block_until_ready(fn())
    return clock() - start


def interleaved_times(
    candidates: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each call of each candidate, the candidates timed in alternation ``repeats`` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            time_call(fn, clock)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(time_call(fn, clock))
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
