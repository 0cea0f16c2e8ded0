"""Confidence intervals over seeds, all from ``scipy.stats``.

- One model: the Student-t interval of the mean over its seeds (``scipy.stats.t.interval``).
- A difference between two models: the paired t interval over the seeds both share
  (``scipy.stats.ttest_rel``) when they share at least two, since the same seed gives both models the
  same data; Welch's unequal-variance interval over all their seeds (``scipy.stats.ttest_ind``)
  otherwise. :attr:`Interval.kind` says which.

Samples must already be one value per seed (see :func:`seqbench.results.one_per_cell`): a duplicated
row counted as a sample would shrink every interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

CONFIDENCE = 0.95
IntervalKind = Literal["t", "paired", "welch", "none"]


@dataclass(frozen=True)
class Interval:
    mean: float | None
    low: float | None  # None with too few values for an interval
    high: float | None
    n: int  # values behind the mean (pairs, for a paired difference)
    kind: IntervalKind = "t"  # t (one sample), paired or welch (a difference), none (no interval)

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def text(self, digits: int = 3, sign: bool = False) -> str:
        if self.mean is None:
            return "—"
        hw = "n/a" if self.half_width is None else f"{self.half_width:.{digits}f}"
        return f"{self.mean:{'+' if sign else ''}.{digits}f} ± {hw}"

    def overlaps(self, other: Interval) -> bool | None:
        """Whether the two intervals share a point; None when either has no interval."""
        if None in (self.low, self.high, other.low, other.high):
            return None
        return self.low <= other.high and other.low <= self.high


def _clean(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def mean_interval(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval over ``values`` (None/NaN dropped); no interval below two values."""
    values = _clean(values)
    n = len(values)
    if n == 0:
        return Interval(None, None, None, 0, "none")
    mean = statistics.mean(values)  # exact rational arithmetic: equal values give exactly their value
    if n < 2:
        return Interval(mean, None, None, n, "none")
    if len(set(values)) == 1:  # scipy needs a positive scale; equal values have a zero-width interval
        return Interval(mean, mean, mean, n, "t")
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(values))
    return Interval(mean, float(low), float(high), n, "t")


def difference_interval(a: Mapping[int, float | None], b: Mapping[int, float | None],
                        confidence: float = CONFIDENCE) -> Interval:
    """mean(a) - mean(b), each given as seed -> value: paired over shared seeds (>= 2), else Welch."""
    a = {seed: float(v) for seed, v in a.items() if v is not None and not math.isnan(v)}
    b = {seed: float(v) for seed, v in b.items() if v is not None and not math.isnan(v)}
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        x, y = [a[s] for s in shared], [b[s] for s in shared]
        diffs = [p - q for p, q in zip(x, y, strict=True)]
        mean = statistics.mean(diffs)
        if len(set(diffs)) == 1:
            return Interval(mean, mean, mean, len(diffs), "paired")
        ci = stats.ttest_rel(x, y).confidence_interval(confidence)
        return Interval(mean, float(ci.low), float(ci.high), len(diffs), "paired")
    x, y = list(a.values()), list(b.values())
    if not x or not y:
        return Interval(None, None, None, 0, "none")
    mean = statistics.mean(x) - statistics.mean(y)
    if len(x) < 2 or len(y) < 2:
        return Interval(mean, None, None, len(x) + len(y), "none")
    if len(set(x)) == 1 and len(set(y)) == 1:
        return Interval(mean, mean, mean, len(x) + len(y), "welch")
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    return Interval(mean, float(ci.low), float(ci.high), len(x) + len(y), "welch")


INTERVAL_NAMES = {"t": "95% Student-t interval", "paired": "paired 95% t-interval over shared seeds",
                  "welch": "Welch 95% interval", "none": "no interval (fewer than two values)"}
