"""Confidence intervals for the report: how sure a difference between base and fine-tuned is, given n.

Every interval is 95 %. Shares of rows use Wilson's interval (sane at 0 % and 100 % and for small n); means and
paired differences use the normal approximation on the per-row values, with the t quantile for small n. Below
MIN_N rows an interval says more than the data does, so there is none.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

MIN_N = 5
Z95 = 1.959964
# two-sided 95 % t quantiles for small degrees of freedom (above 30 the normal one is within 4 %)
_T95 = {4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086,
        25: 2.060, 30: 2.042}


def t95(dof: int) -> float:
    if dof > 30:
        return Z95
    known = max(k for k in _T95 if k <= max(dof, 4))
    return _T95[known]


def wilson(successes: float, n: int) -> Optional[tuple[float, float]]:
    """95 % interval of a share from `successes` of `n`."""
    if n < MIN_N:
        return None
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """95 % interval of the mean of per-row values."""
    n = len(values)
    if n < MIN_N:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def paired_diff_ci(base: Sequence[float], tuned: Sequence[float]) -> Optional[tuple[float, float]]:
    """95 % interval of mean(tuned - base) over the same rows: pairing removes the rows' own difficulty from the
    noise, so a small but steady change is seen as one."""
    if len(base) != len(tuned):
        raise ValueError("paired values must be measured on the same rows")
    return mean_ci([t - b for b, t in zip(base, tuned)])


def independent_diff_ci(base: float, base_se: Optional[float], tuned: float,
                        tuned_se: Optional[float]) -> Optional[tuple[float, float]]:
    """95 % interval of tuned - base from each side's standard error (when rows cannot be paired)."""
    if base_se is None or tuned_se is None or not (math.isfinite(base_se) and math.isfinite(tuned_se)):
        return None
    half = Z95 * math.sqrt(base_se ** 2 + tuned_se ** 2)
    return tuned - base - half, tuned - base + half
