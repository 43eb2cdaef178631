"""Paired statistics against numbers worked out by hand (t quantiles from a printed t table)."""

from __future__ import annotations

import math

import pytest

from normlab.report.paired import paired_difference, paired_rows, summarize

# Student-t table, two-sided 95%: df 2 -> 4.303, df 3 -> 3.182.
T_DF2, T_DF3 = 4.303, 3.182


def test_summary_of_finite_values_counts_the_rest_as_missing():
    summary = summarize([0.80, 0.82, 0.78, math.nan])
    assert summary.n == 3 and summary.missing == 1
    assert summary.mean == pytest.approx(0.80)
    assert summary.std == pytest.approx(0.02)  # sqrt((0 + 0.02^2 + 0.02^2) / 2)
    assert summary.text(scale=100, digits=2) == "80.00 ± 2.00 (n=3, 1 missing)"


def test_one_value_has_no_spread_and_none_has_no_mean():
    one = summarize([0.5])
    assert one.n == 1 and math.isnan(one.std) and one.text() == "0.5000 (n=1)"
    assert summarize([math.nan]).text() == "- (1 missing)"


def test_paired_difference_and_its_t_interval_by_hand():
    baseline = {0: 0.80, 1: 0.82, 2: 0.78, 3: math.nan}  # seed 3 diverged: not a pair
    variant = {0: 0.85, 1: 0.86, 2: 0.84, 3: 0.87}
    difference = paired_difference(variant, baseline)
    # d = 0.05, 0.04, 0.06: mean 0.05, s_d = sqrt((0 + 0.01^2 + 0.01^2) / 2) = 0.01
    assert difference.n == 3 and difference.unpaired == 1
    assert difference.mean == pytest.approx(0.05)
    assert difference.std == pytest.approx(0.01)
    half = T_DF2 * 0.01 / math.sqrt(3)  # 0.02484
    assert difference.low == pytest.approx(0.05 - half, abs=1e-5)
    assert difference.high == pytest.approx(0.05 + half, abs=1e-5)
    assert difference.excludes_zero
    assert difference.text(scale=100, digits=2) == "+5.00 [+2.52, +7.48] (n=3)"


def test_an_interval_across_zero_does_not_exclude_it():
    difference = paired_difference({0: 0.52, 1: 0.49, 2: 0.53}, {0: 0.50, 1: 0.50, 2: 0.50})
    # d = 0.02, -0.01, 0.03: mean 0.013333, s_d = sqrt(8.6667e-4 / 2) = 0.020817
    assert difference.mean == pytest.approx(0.0133333, abs=1e-6)
    assert difference.std == pytest.approx(0.020817, abs=1e-6)
    half = T_DF2 * 0.020817 / math.sqrt(3)  # 0.05171
    assert (difference.low, difference.high) == pytest.approx((0.013333 - half, 0.013333 + half), abs=1e-4)
    assert not difference.excludes_zero


def test_four_pairs_use_three_degrees_of_freedom():
    difference = paired_difference({s: v for s, v in enumerate([1.0, 2.0, 3.0, 6.0])}, {s: 0.0 for s in range(4)})
    # mean 3, s_d = sqrt((4 + 1 + 0 + 9) / 3) = 2.1602
    assert difference.std == pytest.approx(math.sqrt(14 / 3))
    assert difference.high - difference.mean == pytest.approx(T_DF3 * math.sqrt(14 / 3) / 2, abs=1e-3)


def test_one_pair_prints_no_spread_and_no_pair_nothing():
    one = paired_difference({0: 0.9, 1: 0.8}, {0: 0.7})
    assert one.n == 1 and one.unpaired == 1 and not one.has_interval and not one.excludes_zero
    assert one.mean == pytest.approx(0.2) and one.text() == "+0.2000 (n=1)"
    none = paired_difference({0: math.nan}, {0: 0.5})
    assert none.n == 0 and none.text() == "-"


def test_rows_put_the_baseline_first_without_a_difference():
    rows = paired_rows({"batch": {0: 0.9, 1: 0.8}, "none": {0: 0.7, 1: 0.7}}, "none")
    assert [row.variant for row in rows] == ["none", "batch"]
    assert rows[0].difference is None
    assert rows[1].difference.mean == pytest.approx(0.15) and rows[1].difference.n == 2
    with pytest.raises(KeyError, match="baseline 'zca'"):
        paired_rows({"none": {0: 1.0}}, "zca")
