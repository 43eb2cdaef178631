"""Paired statistics over seeds: each variant's mean, std and n, and its paired difference from a
baseline with a 95% t-interval.

The members of a study that share a seed share their initial weights (every parameter the
networks have in common) and their batch sequence, so ``variant - baseline`` can be taken seed
by seed. Its spread is the spread of the *difference*, which is far smaller than the spread of
either variant when seeds move both alike; two independent bands hide that.

Method (stated in every table that uses it): for the seeds where both the variant and the
baseline have a finite value, ``d_s = variant_s - baseline_s``; with ``n`` such seeds,

    mean  d_bar = sum(d_s) / n
    std   s_d   = sqrt(sum((d_s - d_bar)^2) / (n - 1))                (the sample std, ddof = 1)
    95% t-interval  d_bar -/+ t_{0.975, n-1} * s_d / sqrt(n)

(Student's t quantile with n - 1 degrees of freedom, ``scipy.stats.t.ppf``). The interval
"excludes 0" when both ends have the same sign. With n = 1 there is no spread and no interval;
with n = 0 no difference. Seeds where either value is missing or not finite (a diverged run)
are left out of the pairs and counted apart.

Pure NumPy/SciPy on plain numbers: the report and the experiments' summaries both use it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
METHOD = ("paired differences per seed (variant - baseline), mean with a two-sided 95% Student-t interval "
          "d_bar ± t(0.975, n-1)·s_d/√n over the seeds where both are finite")


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof 1; NaN for n < 2) and n of the finite values; ``missing`` counts the
    values left out (NaN: a diverged or unfinished run)."""

    mean: float
    std: float
    n: int
    missing: int = 0

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """``mean ± std (n=...)``; no spread for n = 1, "-" for n = 0."""
        if self.n == 0:
            return "-" + (f" ({self.missing} missing)" if self.missing else "")
        body = f"{self.mean * scale:.{digits}f}"
        if self.n > 1:
            body += f" ± {self.std * scale:.{digits}f}"
        tail = f"n={self.n}" + (f", {self.missing} missing" if self.missing else "")
        return f"{body} ({tail})"


@dataclass(frozen=True)
class PairedDifference:
    """``variant - baseline`` over the seeds both have: mean, std, n and the t-interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    unpaired: int = 0  # seeds of either side left out (missing or not finite on one side)

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below 0."""
        return self.has_interval and (self.low > 0 or self.high < 0)

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """``+mean [low, high] (n=...)``, the interval only for n >= 2."""
        if self.n == 0:
            return "-"
        body = f"{self.mean * scale:+.{digits}f}"
        if self.has_interval:
            body += f" [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]"
        return f"{body} (n={self.n})"


def summarize(values: Iterable[float]) -> Summary:
    """``Summary`` of ``values``; non-finite values count as missing."""
    array = np.asarray(list(values), dtype=float)
    finite = array[np.isfinite(array)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else math.nan
    std = float(finite.std(ddof=1)) if n > 1 else math.nan
    return Summary(mean, std, n, int(array.size) - n)


def t_quantile(confidence: float, degrees_of_freedom: int) -> float:
    """The two-sided Student-t quantile ``t_{(1 + confidence) / 2, df}``."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2.0, degrees_of_freedom))


def paired_difference(variant: Mapping[Any, float], baseline: Mapping[Any, float], *,
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """``variant - baseline`` paired by key (the seed); see the module docstring for the method."""
    keys = set(variant) | set(baseline)
    both = sorted((k for k in keys if k in variant and k in baseline
                   and math.isfinite(variant[k]) and math.isfinite(baseline[k])), key=str)
    differences = np.asarray([variant[k] - baseline[k] for k in both], dtype=float)
    n = int(differences.size)
    unpaired = len(keys) - n
    if n == 0:
        return PairedDifference(math.nan, math.nan, 0, math.nan, math.nan, unpaired)
    mean = float(differences.mean())
    if n == 1:
        return PairedDifference(mean, math.nan, 1, math.nan, math.nan, unpaired)
    std = float(differences.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return PairedDifference(mean, std, n, mean - half, mean + half, unpaired)


@dataclass(frozen=True)
class PairedRow:
    """One variant of a comparison: its own summary and its difference from the baseline
    (None for the baseline itself)."""

    variant: Hashable
    summary: Summary
    difference: PairedDifference | None


def paired_rows(values: Mapping[Any, Mapping[Any, float]], baseline: Hashable) -> list[PairedRow]:
    """For ``values[variant][seed]``: one row per variant (the baseline first), each with its
    ``Summary`` and, except the baseline, its ``paired_difference`` from ``baseline``."""
    if baseline not in values:
        raise KeyError(f"baseline {baseline!r} is not among the variants {list(values)}")
    order = [baseline] + [variant for variant in values if variant != baseline]
    return [
        PairedRow(variant, summarize(values[variant].values()),
                  None if variant == baseline else paired_difference(values[variant], values[baseline]))
        for variant in order
    ]
