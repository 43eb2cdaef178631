"""Probe schedules chosen from an overhead budget ("probing may cost 10% of training time").

Given ``budget`` (0.1 = 10%), a run of ``total_steps`` plain steps and each probe's measured
cost ``c_p`` (the extra time of a step that also runs probe p, in plain steps: ``t_p / t - 1``),
every probe gets an equal share of the budget and so

    n_p = clip(floor(budget / P * total_steps / c_p), 1, total_steps)

measurements (P probes); their total extra time ``sum_p n_p c_p <= budget * total_steps``.

Where the measurements go: logarithmically denser early, where training changes fastest
(cockpit's ``logarithmic`` schedule is the anchor: points evenly spaced in ``log(step)``). The
steps of a probe with n measurements are the first n distinct steps of one fixed sequence,
``s_k = round(T ** u_k) - 1`` with ``u_k`` the base-2 van der Corput sequence (0, 1/2, 1/4, 3/4,
1/8, ...) and ``T = total_steps``: every prefix of ``u`` is spread evenly over [0, 1), so every
probe's steps cover the whole run log-evenly, step 0 first. Because the schedules are prefixes of
one sequence they are nested (a cheaper probe measures at every step a costlier one does, and
more), so the group step is compiled for at most P + 1 probe combinations.

All of it is a pure function of ``(total_steps, budget, costs)``: the same inputs give the same
steps, and a resumed run that reads back the stored steps measures exactly where the
uninterrupted run did. Schedules stay Python-side: a step without a due probe runs the plain
compiled step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from normlab.errors import NormlabError


def van_der_corput(k: int) -> float:
    """The k-th base-2 van der Corput number: k's binary digits mirrored after the point."""
    value, denominator = 0.0, 1.0
    while k:
        denominator *= 2.0
        k, digit = divmod(k, 2)
        value += digit / denominator
    return value


def log_dense_steps(total_steps: int, count: int) -> tuple[int, ...]:
    """The first ``count`` distinct steps of ``round(total_steps ** u_k) - 1``, sorted.

    ``0 <= step < total_steps``; denser early (even in log(step + 1)); ``count`` is capped at
    ``total_steps``. Prefix-nested: ``set(log_dense_steps(T, n)) <= set(log_dense_steps(T, n+1))``.
    """
    if total_steps < 1 or count < 0:
        raise ValueError(f"need total_steps >= 1 and count >= 0, got {total_steps}, {count}")
    count = min(count, total_steps)
    chosen: list[int] = []
    seen: set[int] = set()
    k = 0
    # Powers of two of u-values fill in ever finer; once the early integers are taken, a fill-in
    # by the plain lowest free step keeps the loop finite when count is close to total_steps.
    limit = 64 * total_steps + 64
    while len(chosen) < count and k < limit:
        step = min(total_steps - 1, int(round(total_steps ** van_der_corput(k))) - 1)
        if step not in seen:
            seen.add(step)
            chosen.append(step)
        k += 1
    free = (s for s in range(total_steps) if s not in seen)
    while len(chosen) < count:
        chosen.append(next(free))
    return tuple(sorted(chosen))


def measurement_count(total_steps: int, budget_steps: float, cost_in_steps: float) -> int:
    """``clip(floor(budget_steps / cost), 1, total_steps)``: measurements that fit the budget."""
    if cost_in_steps <= 0 or not math.isfinite(cost_in_steps):
        return total_steps  # free (or unmeasurably cheap): every step
    return max(1, min(total_steps, int(budget_steps // cost_in_steps)))


def budget_schedules(total_steps: int, budget: float, costs: Mapping[str, float]
                     ) -> dict[str, tuple[int, ...]]:
    """The measurement steps of each probe under ``budget`` (see the module docstring)."""
    if not (isinstance(budget, (int, float)) and 0 < budget):
        raise NormlabError(f"probe_budget must be a fraction > 0 (0.1 = 10% of training time), "
                           f"got {budget!r}")
    if not costs:
        return {}
    share = budget * total_steps / len(costs)
    return {name: log_dense_steps(total_steps, measurement_count(total_steps, share, cost))
            for name, cost in costs.items()}


def overhead(schedules: Mapping[str, tuple[int, ...]], costs: Mapping[str, float],
             total_steps: int) -> float:
    """The planned probing overhead ``sum_p n_p c_p / total_steps`` (a fraction of training)."""
    return sum(len(schedules[name]) * max(cost, 0.0) for name, cost in costs.items()) / total_steps


# Below this a measured cost is timing noise (every probe step at least reads back its outputs):
# a probe timed as free on a busy machine would otherwise be scheduled at every step.
MIN_COST_STEPS = 0.1

# A timed block lasts at least this long, and has at most ``max_steps`` steps (see block_length).
MIN_BLOCK_SECONDS = 0.02
# The default: blocks of one step. Measured idle (bench/probe_budget.py, README): with blocks of up
# to 16 steps the cheap probes' costs (distance, gradients) fell to the MIN_COST_STEPS floor, they
# were scheduled hundreds of times and the mlp and dln overheads at a 20% budget came out +73% and
# +86%; with one-step blocks +13% and +31%.
MAX_BLOCK_STEPS = 1


def block_length(step_seconds: float, max_steps: int = MAX_BLOCK_STEPS) -> int:
    """Steps per timed block: enough that a block of plain steps lasts ``MIN_BLOCK_SECONDS``, at
    most ``max_steps``, at least 1.

    Why blocks: the training loop dispatches steps back to back without waiting for them, so for
    a small network a plain step in the loop costs less than one timed on its own, and a probe
    step can slow the steps right after it (``bench/probe_budget.py`` shows both). A
    probe's cost is what it adds to a block of loop steps, in loop steps; for a step of 20 ms or
    more (a conv net) these effects are lost in the step itself and a block is one step. Measured,
    longer blocks resolved cheap probes worse (``MAX_BLOCK_STEPS``), so by default a block is one step.
    """
    if not step_seconds > 0:
        return max_steps
    return max(1, min(max_steps, math.ceil(MIN_BLOCK_SECONDS / step_seconds)))


def measured_costs(block_seconds: Callable[[tuple, int], float], probes: Sequence, *, repeats: int = 5,
                   min_seconds: float = 2.0, max_repeats: int = 40,
                   max_block_steps: int = MAX_BLOCK_STEPS) -> dict[str, float]:
    """Each probe's cost in plain loop steps, at least ``MIN_COST_STEPS``:

        c_p = (min(T_p) - min(T_0)) / (min(T_0) / n)

    ``block_seconds(due, n)`` runs ``n`` training steps as the training loop does (dispatched back
    to back, waited for at the end, the outputs read back), the first with the probes ``due`` (a
    tuple, ``()`` for none) and the rest plain, and returns the block's wall time: ``T_p`` for
    ``due = (p,)``, ``T_0`` for ``()``. ``n = block_length`` (at most ``max_block_steps``) of
    a second plain call of one step (the first compiles). One warm-up call each (it compiles),
    then the candidates alternate, so machine noise hits them alike: at least ``repeats`` rounds,
    more (up to ``max_repeats``) until the timed blocks add up to ``min_seconds``. With ``n = 1``
    (the default) this is ``min(t_p) / min(t) - 1``.

    The minimum, not the median: on a shared machine a block's time is its own plus whatever
    preemption hit it, a heavy tail; the fastest of many is the closest to its own time, for the
    plain and the probed block alike (``bench/probe_budget.py`` prints both).
    """
    block_seconds((), 1)  # compiles the plain step: a block sized by a compiling call would be one step
    steps = block_length(block_seconds((), 1), max_block_steps)
    candidates = [()] + [(probe,) for probe in probes]
    for due in candidates:
        block_seconds(due, steps)
    samples: list[list[float]] = [[] for _ in candidates]
    timed = 0.0
    while len(samples[0]) < repeats or (timed < min_seconds and len(samples[0]) < max_repeats):
        for i, due in enumerate(candidates):
            samples[i].append(block_seconds(due, steps))
            timed += samples[i][-1]
    plain = min(samples[0])
    return {probe.name: max(MIN_COST_STEPS, (min(samples[i + 1]) - plain) / (plain / steps))
            for i, probe in enumerate(probes)}
