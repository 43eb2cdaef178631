"""tools/mutation.py's arithmetic: the seeded sample of mutants and the score's Wilson interval."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutation.py"
spec = importlib.util.spec_from_file_location("mutation_tool", TOOL)
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def score_test_bounds(successes: int, trials: int) -> np.ndarray:
    """The p0 at which the score test of p = p0 sits exactly at |z|: (p̂ - p0)² = z² p0 (1 - p0) / n."""
    p_hat = successes / trials
    # (1 + z²/n) p0² - (2 p̂ + z²/n) p0 + p̂² = 0
    a, b, c = 1 + Z95**2 / trials, -(2 * p_hat + Z95**2 / trials), p_hat**2
    return np.sort(np.roots([a, b, c]).real)


@pytest.mark.parametrize("successes, trials", [(36, 40), (8, 10), (1, 3), (51, 60)])
def test_wilson_interval_inverts_the_score_test(successes, trials):
    assert mutation.wilson_interval(successes, trials) == pytest.approx(tuple(score_test_bounds(successes, trials)))


def test_wilson_interval_at_the_extremes_stays_inside_0_1_and_is_not_empty():
    low, high = mutation.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(Z95**2 / (10 + Z95**2))  # the closed form at p̂ = 0
    low, high = mutation.wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(10 / (10 + Z95**2))
    assert mutation.wilson_interval(0, 0) == (0.0, 1.0)  # nothing tested: nothing known


def test_sample_is_seeded_a_subset_and_independent_of_the_listing_order():
    names = [f"normlab.m.x_f__mutmut_{i}" for i in range(200)]
    sample = mutation.draw_sample(names, 30, seed=16)
    assert len(sample) == len(set(sample)) == 30 and set(sample) <= set(names)
    assert mutation.draw_sample(list(reversed(names)), 30, seed=16) == sample
    assert mutation.draw_sample(names, 30, seed=17) != sample
    assert mutation.draw_sample(names[:5], 30, seed=16) == sorted(names[:5])


def test_summary_counts_timeouts_as_killed_uncovered_as_survived_and_drops_equivalents():
    outcome = {"a": "killed", "b": "timeout", "c": "survived", "d": "no tests", "e": "survived", "f": "not checked"}
    line = mutation.summary_line("store", outcome, equivalent={"e"}, total=100)
    low, high = mutation.wilson_interval(2, 4)
    assert line.startswith("store: 6 of 100 mutants (sample): ")
    assert "1 equivalent; 50.0% of 4 non-equivalent killed" in line
    assert f"(95% Wilson interval {100 * low:.0f}-{100 * high:.0f}%)" in line
