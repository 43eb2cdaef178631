"""The budget scheduler: exact counts within the budget, log-dense, nested, deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.probes.budget import (
    MAX_BLOCK_STEPS,
    MIN_COST_STEPS,
    block_length,
    budget_schedules,
    log_dense_steps,
    measured_costs,
    measurement_count,
    overhead,
    van_der_corput,
)


def test_van_der_corput_mirrors_the_binary_digits():
    assert [van_der_corput(k) for k in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


@pytest.mark.parametrize("total", [1, 7, 100, 1000, 15000])
def test_log_dense_steps_are_distinct_in_range_and_exactly_as_many_as_asked(total):
    for count in (0, 1, 5, total // 2, total):
        steps = log_dense_steps(total, count)
        assert len(steps) == len(set(steps)) == min(count, total)
        assert all(0 <= s < total for s in steps) and list(steps) == sorted(steps)
        if count:
            assert steps[0] == 0


def test_the_schedules_are_nested_and_denser_early():
    previous: set[int] = set()
    for count in range(1, 60):
        steps = set(log_dense_steps(2000, count))
        assert previous <= steps
        previous = steps
    steps = np.asarray(log_dense_steps(2000, 40))
    # even in log(step + 1): each quarter of log-space holds about a quarter of the points
    quarters = np.histogram(np.log(steps + 1), bins=4, range=(0, math.log(2000)))[0]
    assert quarters.min() >= 5
    assert (steps < 200).sum() > (steps >= 1000).sum()


def test_the_planned_overhead_stays_within_the_budget_and_uses_most_of_it():
    costs = {"activations": 0.3, "ics": 3.0, "landscape": 6.5, "predictiveness": 11.0}
    for budget in (0.05, 0.2):
        schedules = budget_schedules(3000, budget, costs)
        used = overhead(schedules, costs, 3000)
        assert used <= budget + 1e-12
        assert used > 0.9 * budget
        for name, cost in costs.items():  # by hand: floor(budget / 4 * 3000 / cost)
            assert len(schedules[name]) == int(budget / 4 * 3000 // cost)


def test_schedules_are_deterministic():
    costs = {"a": 1.7, "b": 0.4}
    assert budget_schedules(1234, 0.1, costs) == budget_schedules(1234, 0.1, dict(costs))


def test_counts_are_clipped_and_a_bad_budget_is_refused():
    assert measurement_count(100, 0.5, 50.0) == 1  # at least one measurement
    assert measurement_count(100, 500.0, 0.1) == 100
    assert measurement_count(100, 5.0, 0.0) == 100
    for bad in (0, -0.1, "x"):
        with pytest.raises(NormlabError, match="probe_budget"):
            budget_schedules(100, bad, {"a": 1.0})


def test_measured_costs_are_ratios_to_the_plain_step_with_a_noise_floor():
    class Named:
        def __init__(self, name):
            self.name = name

    cheap, costly = Named("cheap"), Named("costly")
    seconds = {(): 0.030, (cheap,): 0.0299, (costly,): 0.055}  # blocks of one 30 ms step
    calls = []

    def block_seconds(due, steps):
        calls.append((due, steps))
        return seconds[due]

    costs = measured_costs(block_seconds, [cheap, costly], repeats=3, min_seconds=0)
    assert costs == {"cheap": MIN_COST_STEPS, "costly": pytest.approx(25 / 30)}
    assert calls[:2] == [((), 1), ((), 1)]  # a compiling call, then one that sizes the blocks: 30 ms is enough
    assert len(calls) == 2 + 3 * 4  # a warm-up each, then three interleaved rounds
    assert [due for due, _ in calls[5:8]] == [(), (cheap,), (costly,)]
    assert {steps for _, steps in calls[2:]} == {1}
    # rounds go on until the timed blocks add up to min_seconds (0.1149 s a round: 2 rounds for 0.2 s)
    calls.clear()
    measured_costs(block_seconds, [cheap, costly], repeats=1, min_seconds=0.2)
    assert len(calls) == 2 + 3 * (1 + 2)


def test_a_fast_step_is_timed_in_blocks_and_the_cost_is_per_loop_step():
    """With blocks allowed (max_block_steps=16; the default is one step), a 1 ms step is timed in
    blocks of 16 (at most max_block_steps, MIN_BLOCK_SECONDS long),
    and the cost is what the probe adds to a block, in the block's own per-step time: a probe step
    that costs 3 ms more in the loop is 3 plain steps, however long the step takes alone."""
    class Named:
        name = "probe"

    probe = Named()
    seen = []

    def block_seconds(due, steps):
        seen.append(steps)
        if len(seen) == 1:
            return 3.0  # the first call compiles: it must not size the blocks (it would make them 1 step)
        alone = 0.002 if steps == 1 else None  # one step timed alone: dispatch not overlapped
        return alone if alone is not None else 0.001 * steps + (0.003 if due else 0.0)

    assert block_length(0.002, 16) == 10 and block_length(0.5, 16) == 1 and block_length(1e-5, 16) == 16
    assert block_length(0.002) == block_length(1e-5) == MAX_BLOCK_STEPS == 1  # the default: one step
    costs = measured_costs(block_seconds, [probe], repeats=2, min_seconds=0, max_block_steps=16)
    assert seen[:2] == [1, 1] and set(seen[2:]) == {10}
    assert costs == {"probe": pytest.approx(3.0)}


def test_measured_costs_take_the_fastest_call_of_each_so_preemption_does_not_count():
    class Named:
        name = "probe"

    probe = Named()
    # a plain step of 10 ms and a probed one of 15 ms, slowed by preemption in 3 of the 5 plain
    # calls (the medians, 20 and 15 ms, would make the probe look free); after the compiling and
    # the sizing call and the two warm-ups:
    slowed = iter([1.0, 1.0, 1.0, 1.0] + [2.0, 1.0, 1.0, 1.5, 3.0, 1.0, 2.0, 1.0, 1.0, 2.0])
    costs = measured_costs(lambda due, steps: (0.010 * steps + (0.005 if due else 0.0)) * next(slowed), [probe],
                           repeats=5, min_seconds=0)
    assert costs == {"probe": pytest.approx(0.5)}
