"""Confidence intervals over seeds, all from ``scipy.stats``.

- One model: the Student-t interval of the mean over its seeds (``scipy.stats.t.interval``).
- A difference between two models: the paired t interval over the seeds both share
  (``scipy.stats.ttest_rel``) when they share at least two, since the same seed gives both models the
  same data; Welch's unequal-variance interval over all their seeds (``scipy.stats.ttest_ind``)
  otherwise. :attr:`Interval.kind` says which.

What a claim's reader needs beside an interval (:func:`describe_values`, :func:`describe_difference`):

- values that cannot leave [0, 1] (accuracy, gate rates, fractions of a run) keep their interval inside
  those bounds; seeds that split into solved and failed runs read "k/n solved" with the exact
  Clopper-Pearson interval of that proportion (``scipy.stats.binomtest(...).proportion_ci``) and the
  median, since a mean ± t over a bimodal outcome says nothing true; seeds that all agree read
  "3/3 at 1.000", never "± 0.000", which would claim infinite precision;
- a difference gets the exact sign-flip test over its pairs (``scipy.stats.permutation_test``,
  ``permutation_type="samples"``: every sign pattern of the paired differences) and the smallest
  difference its number of pairs could detect (statsmodels' ``TTestPower``: 80% power, two-sided 5%);
- many pairwise comparisons (a leaderboard's "tied") use Holm's correction (statsmodels'
  ``multipletests``, :func:`holm`).

Samples must already be one value per seed (see :func:`seqbench.results.one_per_cell`): a duplicated
row counted as a sample would shrink every interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

CONFIDENCE = 0.95
IntervalKind = Literal["t", "paired", "welch", "none"]


@dataclass(frozen=True)
class Interval:
    mean: float | None
    low: float | None  # None with too few values for an interval
    high: float | None
    n: int  # values behind the mean (pairs, for a paired difference)
    kind: IntervalKind = "t"  # t (one sample), paired or welch (a difference), none (no interval)
    p: float | None = None  # a difference's two-sided t-test p-value (zero mean), else None

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
        if len(set(diffs)) == 1:  # no spread: the t-test is undefined; equal nonzero gaps are certain
            return Interval(mean, mean, mean, len(diffs), "paired", 1.0 if mean == 0 else 0.0)
        test = stats.ttest_rel(x, y)
        ci = test.confidence_interval(confidence)
        return Interval(mean, float(ci.low), float(ci.high), len(diffs), "paired", float(test.pvalue))
    x, y = list(a.values()), list(b.values())
    if not x or not y:
        return Interval(None, None, None, 0, "none")
    mean = statistics.mean(x) - statistics.mean(y)
    if len(x) < 2 or len(y) < 2:
        return Interval(mean, None, None, len(x) + len(y), "none")
    if len(set(x)) == 1 and len(set(y)) == 1:
        return Interval(mean, mean, mean, len(x) + len(y), "welch", 1.0 if mean == 0 else 0.0)
    test = stats.ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return Interval(mean, float(ci.low), float(ci.high), len(x) + len(y), "welch", float(test.pvalue))


INTERVAL_NAMES = {"t": "95% Student-t interval", "paired": "paired 95% t-interval over shared seeds",
                  "welch": "Welch 95% interval", "none": "no interval (fewer than two values)"}


# ---------------------------------------------------------------------- honest descriptions

SOLVED = 0.9  # an accuracy-like value at or above this is a solved run
FAILED = 0.5  # at or below this a failed one; seeds all on either side of the gap are a solve/fail outcome
POWER = 0.8


@dataclass(frozen=True)
class Described:
    text: str  # what the report prints
    mean: float | None
    low: float | None  # the interval a verdict decides on (inside ``bounds``); None: no interval
    high: float | None


def paired_differences(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> list[float]:
    a = {s: float(v) for s, v in a.items() if v is not None and not math.isnan(v)}
    b = {s: float(v) for s, v in b.items() if v is not None and not math.isnan(v)}
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion k/n, from ``scipy.stats.binomtest``."""
    ci = stats.binomtest(k, n).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


def solve_fail(values: Sequence[float]) -> int | None:
    """How many of ``values`` are solved runs when the seeds split into solved (>= SOLVED) and failed
    (<= FAILED) with both present; None when they do not split so."""
    solved = sum(v >= SOLVED for v in values)
    failed = sum(v <= FAILED for v in values)
    return solved if solved and failed and solved + failed == len(values) else None


def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """The exact two-sided sign-flip test of zero mean difference over paired differences
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``: all 2**n sign patterns)."""
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return None if len(diffs) < 2 else 1.0
    result = stats.permutation_test((np.asarray(diffs, dtype=float),), np.mean, permutation_type="samples",
                                    n_resamples=np.inf, alternative="two-sided")
    return float(result.pvalue)


def detectable_effect(pairs: int, confidence: float = CONFIDENCE, power: float = POWER) -> float | None:
    """The smallest paired difference, in standard deviations of the differences, that ``pairs`` pairs
    detect with ``power`` at two-sided level 1 - ``confidence`` (statsmodels' ``TTestPower``): about
    3.3 with 3 pairs, 1.7 with 5."""
    if pairs < 2:
        return None
    return float(TTestPower().solve_power(nobs=pairs, alpha=1 - confidence, power=power, alternative="two-sided"))


def _clip(value: float, bounds: tuple[float, float] | None) -> float:
    return value if bounds is None else min(max(value, bounds[0]), bounds[1])


def describe_values(values: Sequence[float | None], bounds: tuple[float, float] | None = (0.0, 1.0),
             solved_outcome: bool = True, confidence: float = CONFIDENCE) -> Described:
    """One model's values over seeds as the report writes them (see the module docstring); ``bounds``:
    what the values cannot leave (None: unbounded); ``solved_outcome``: whether solved/failed runs mean
    anything for this metric (accuracy: yes; a gate rate: no)."""
    values = _clean(values)
    n = len(values)
    if n == 0:
        return Described("—", None, None, None)
    if len(set(values)) == 1:
        return Described(f"{n}/{n} seeds at {values[0]:.3f}", values[0], values[0], values[0])
    interval = mean_interval(values, confidence)
    low, high = _clip(interval.low, bounds), _clip(interval.high, bounds)
    clipped = bounds is not None and (low != interval.low or high != interval.high)
    text = (f"{interval.mean:.3f} [{low:.3f}, {high:.3f}] ({INTERVAL_NAMES['t']}, bounded to "
            f"[{bounds[0]:g}, {bounds[1]:g}])" if clipped else f"{interval.mean:.3f} ± {interval.half_width:.3f} "
            f"({INTERVAL_NAMES['t']})")
    solved = solve_fail(values) if solved_outcome else None
    if solved is not None:
        plow, phigh = proportion_interval(solved, n, confidence)
        text = (f"{solved}/{n} solved (≥ {SOLVED:g}; Clopper-Pearson 95% {plow:.2f}–{phigh:.2f}), median "
                f"{statistics.median(values):.3f}; mean {text}")
    return Described(text, interval.mean, low, high)


def describe_difference(a: Mapping[int, float | None], b: Mapping[int, float | None],
                        bounds: tuple[float, float] | None = (-1.0, 1.0), confidence: float = CONFIDENCE
                        ) -> Described:
    """mean(a) - mean(b) with its interval (paired over shared seeds, else Welch), the exact sign-flip
    test and the smallest difference the pairs could detect."""
    interval = difference_interval(a, b, confidence)
    if interval.mean is None:
        return Described("—", None, None, None)
    diffs = paired_differences(a, b) if interval.kind == "paired" else []
    if interval.low is None:
        return Described(f"{interval.mean:+.3f} (no interval: fewer than two values a side)", interval.mean,
                         None, None)
    if interval.kind == "paired" and len(set(diffs)) == 1:
        text = f"{len(diffs)}/{len(diffs)} pairs differ by {diffs[0]:+.3f}"
    else:
        low, high = _clip(interval.low, bounds), _clip(interval.high, bounds)
        name = INTERVAL_NAMES[interval.kind] + " of the difference"
        text = (f"{interval.mean:+.3f} [{low:+.3f}, {high:+.3f}] ({name}, bounded to [{bounds[0]:g}, {bounds[1]:g}])"
                if bounds is not None and (low, high) != (interval.low, interval.high)
                else f"{interval.mean:+.3f} ± {interval.half_width:.3f} ({name})")
    low, high = _clip(interval.low, bounds), _clip(interval.high, bounds)
    if diffs:
        p = sign_flip_p(diffs)
        effect = detectable_effect(len(diffs), confidence)
        spread = statistics.stdev(diffs)
        text += f"; exact sign-flip p = {p:.3g} over {2 ** len(diffs)} sign patterns"
        text += (f"; {len(diffs)} pairs detect a difference of ≥ {effect:.2f} sd of the differences"
                 + (f" (= {effect * spread:.3f})" if spread > 0 else "") + f" at {POWER:.0%} power")
    return Described(text, interval.mean, low, high)


def holm(pvalues: Sequence[float], confidence: float = CONFIDENCE) -> list[bool]:
    """Which of several tests reject at level 1 - ``confidence`` after Holm's step-down correction for
    their number (statsmodels' ``multipletests(method="holm")``)."""
    if not pvalues:
        return []
    reject, *_ = multipletests(list(pvalues), alpha=1 - confidence, method="holm")
    return [bool(r) for r in reject]
