"""What it would take: the budget that would likely decide a budget-limited claim, and what it costs.

A claim is budget-limited (seqbench.analyse.gate) when its runs stopped before they could decide it.
This module says how far they would have to go, from the runs' own curves, and what that costs here.

The pace of a run is the least-squares slope of its validation metric over the last 20% of its
evaluations (seqbench.train.stopping.trend_window, the window the gate reads), per step; a run that
stopped itself (a plateau or the target) has pace 0, since more steps would not move it. The estimate
is a linear extrapolation of that pace to the level the verdict turns on:

- **a loser still improving**: the gap between the measured value (the mean over seeds the verdict
  reads) and the edge of the rule the verdict rests on (e.g. ``≤ 0.1``), closed at the loser's mean pace
  over its seeds (less the winner's, for a difference: a winner still rising widens the gap; one
  drifting down is not counted, since the verdict does not rest on it). At that
  budget, if the pace holds, the verdict no longer stands; a run there with plateau stopping
  (train.patience) either shows the loser level off short of the edge, and the verdict stands, or
  cross it;
- **no model learned the task** (the positive control): per model and setting of the sweep, the steps
  until its mean test accuracy, moving at its runs' mean validation pace, is LEARNED_MARGIN above
  chance; the quickest group gives the estimate;
- **a first passage some runs never reached** (a censored curve statistic): per censored run, the
  steps until its validation metric, at its pace, reaches the claim's threshold; the slowest run gives it.

Curves flatten as they approach what a model can learn, so a straight line reaches any level sooner
than the curve: every estimate is a lower bound on the steps, and the text says so. With a pace of 0 or
less (or unknown: no curve), nothing can be extrapolated, and the text says that instead.

The cost is the claim's sweep as it ran (every model, grid value and seed of it in the rows) at the
new budget: each row's core-seconds per step (``wall_time_s`` × ``threads`` / ``steps``, so setup and
evaluation are included) times the steps, summed. It is compared with one day of the machine the rows
ran on: CPU_CORES cores for 24 hours; beyond that, the factor by which it needs more cores or faster
hardware (no accelerator speed is assumed: the factor is of this machine's throughput).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seqbench.analyse.gate import LEARNED_MARGIN, margin
from seqbench.results import config_settings
from seqbench.train.stopping import trend_window

CPU_CORES = 2  # the machine the cpu preset is sized for (docs/reproduction-plan.md): a 2-core CPU
DAY_S = 24 * 3600
CAVEAT = "a linear extrapolation of the last 20% of evaluations, so a lower bound: curves flatten"


def budget(rows: Sequence[dict[str, Any]]) -> int:
    """The runs' step budget today (``train.max_steps``, else the steps they trained)."""
    return max(int(config_settings(r).get("train.max_steps") or r.get("steps") or 0) for r in rows)


def curve_metric(metric: str, points: Sequence[dict[str, Any]]) -> str:
    """The curve column to read for a claim's metric: itself where the curve has it (accuracy_hard), else
    the validation accuracy every classification curve has."""
    return metric if any(p.get(metric) is not None for p in points) else "accuracy"


def run_pace(row: dict[str, Any], points: Sequence[dict[str, Any]], metric: str = "accuracy") -> float | None:
    """Change of ``metric`` per step over the last 20% of the run's evaluations (up is better); 0 for a run
    that stopped itself (plateau, target, diverged); None when it ended at the budget with no curve to read."""
    if row.get("stop_reason") in ("plateau", "target", "diverged"):
        return 0.0
    series = sorted((float(p["step"]), float(p[metric])) for p in points if p.get(metric) is not None)
    window = trend_window(series)
    if window is None or window[1] <= 0:
        return None
    change, span = window
    return change / span


def mean_pace(rows: Sequence[dict[str, Any]], curves: dict[str, list[dict]], metric: str
              ) -> tuple[float | None, list[int]]:
    """(the mean pace over ``rows``' seeds, the seeds whose pace is unknown); None when any is unknown: a
    mean over the seeds that have a curve would not be the mean the verdict reads."""
    paces = {}
    for row in rows:
        points = curves.get(row["run_id"], [])
        paces[row["seed"]] = run_pace(row, points, curve_metric(metric, points))
    unknown = sorted(seed for seed, pace in paces.items() if pace is None)
    if unknown or not paces:
        return None, unknown
    return sum(paces.values()) / len(paces), []


def nice(steps: float) -> int:
    """Steps rounded up to two significant figures (4,733 -> 4,800): an estimate, not a count."""
    if steps <= 0:
        return 0
    unit = 10 ** max(0, int(math.floor(math.log10(steps))) - 1)
    return int(math.ceil(round(steps / unit, 6)) * unit)  # round first: 790.0000001 is 790, not 800


@dataclass(frozen=True)
class Need:
    """What a budget-limited claim would take."""

    text: str  # the claim's statement of it (its row, the budget-limited list, the closing note)
    short: str  # the summary's: "≈ 1,100 steps, ~1.0 core-hours here", or "cannot be extrapolated"


def cost(rows: Sequence[dict[str, Any]], steps: int, cores: int = CPU_CORES) -> tuple[str, str]:
    """(in brief, in full) what ``rows`` (the claim's sweep) would cost rerun at ``steps`` each, on the
    machine they ran on."""
    timed = [r for r in rows if r.get("wall_time_s") and r.get("steps")]
    if not timed:
        return "cost unknown", "its cost is unknown: the rows record no wall time"
    seconds = sum(r["wall_time_s"] * (r.get("threads") or 1) / r["steps"] for r in timed) * steps
    runs = f"the claim's sweep, {len(timed)} runs" + (f" of {len(rows)} timed" if len(timed) < len(rows) else "")
    devices = {str(r.get("device") or "") for r in timed}
    if not all(d.startswith("cpu") for d in devices):
        hours = sum(r["wall_time_s"] / r["steps"] for r in timed) * steps / 3600
        brief = f"~{hours:,.1f} device-hours on {', '.join(sorted(devices))}"
        return brief, f"{runs}: {brief}"
    hours, day = seconds / 3600, cores * DAY_S / 3600
    if hours <= day:
        brief = f"~{hours:,.1f} core-hours here"
        return brief, f"{runs}: {brief}, fits one day of this {cores}-core CPU"
    factor = hours / day
    brief = f"~{hours:,.0f} core-hours here, {factor:.1f} days of this {cores}-core CPU"
    return brief, (f"{runs}: {brief}; in one day it needs ≥ {math.ceil(factor * cores)} such cores, or hardware "
                   f"{factor:.1f}x this CPU's throughput (a GPU)")


def cost_text(rows: Sequence[dict[str, Any]], steps: int, cores: int = CPU_CORES) -> str:
    return cost(rows, steps, cores)[1]


def _estimate(steps: float, today: int, basis: str, sweep: Sequence[dict[str, Any]]) -> Need:
    total = nice(steps)
    brief, full = cost(sweep, total)
    ratio = f"{total / today:.1f}x today's {today:,}; " if today > 0 else ""  # rows without a recorded budget
    return Need(f"what it would take: ≈ {total:,} steps ({ratio}{full}), where {basis}; {CAVEAT}",
                f"≈ {total:,} steps, {brief}")


def cannot(why: str) -> Need:
    return Need(f"what it would take cannot be extrapolated from the curves: {why}", "cannot be extrapolated")


def per_100(pace: float) -> str:
    """A pace per 100 steps with two significant figures, never in scientific notation."""
    value = pace * 100
    digits = 3 if value == 0 else max(3, 1 - math.floor(math.log10(abs(value))))
    return f"{value:+.{digits}f} per 100 steps"


def loser_need(name: str, loser: Sequence[dict[str, Any]], metric: str, measured: float, edge: float, rule: str,
               curves: dict[str, list[dict]], sweep: Sequence[dict[str, Any]],
               winner: tuple[Sequence[dict[str, Any]], str] | None = None) -> Need:
    """The budget at which the losing side ``name`` (its rows ``loser``, read on ``metric``), at its pace,
    would take the measured value ``measured`` to the ``edge`` of the rule ``rule`` the verdict rests on;
    ``winner``: the other side's rows and metric for a difference (their pace widens the gap)."""
    pace, unknown = mean_pace(loser, curves, metric)
    if pace is None:
        return cannot(f"seed(s) {', '.join(map(str, unknown))} of {name} have no curve to read a pace from")
    net, against = pace, ""
    if winner:
        other, unknown = mean_pace(winner[0], curves, winner[1])
        if other is None:
            return cannot(f"seed(s) {', '.join(map(str, unknown))} of the other side have no curve")
        # only a winner still rising moves the gap; one drifting down is noise the verdict does not rest on
        net, against = pace - max(other, 0.0), f"; the other side's {per_100(other)}"
    if net <= 0:
        return cannot(f"the mean pace of {name} ({per_100(pace)}{against}) does not close the gap to the rule's edge "
                      f"({rule}): linear extrapolation says the verdict would stand, but the runs had not levelled off")
    gap = abs(measured - edge)
    basis = (f"{name}, at its mean pace over its seeds ({per_100(pace)}{against}), takes the measured "
             f"{measured:+.3f} to the edge of the rule the verdict rests on ({rule}); a run to that budget with "
             "train.patience shows the loser level off short of it (the verdict stands) or cross it")
    today = budget(loser)
    return _estimate(today + gap / net, today, basis, sweep)


def control_need(groups: Sequence[tuple[str, list[dict[str, Any]]]], curves: dict[str, list[dict]],
                 sweep: Sequence[dict[str, Any]]) -> Need:
    """The budget at which the quickest learner of the sweep (``groups``: per model and setting, its rows;
    seqbench.analyse.gate.learner_groups) would be LEARNED_MARGIN above chance at its pace."""
    found, stalled = [], []
    for name, rows in groups:
        pace, _ = mean_pace(rows, curves, "accuracy")
        if pace is None or pace <= 0:
            stalled.append(name)
            continue
        today = budget(rows)
        found.append((today + (LEARNED_MARGIN - margin(rows)) / pace, today, name, pace, margin(rows)))
    if not found:
        return cannot("no model and setting of the sweep was still rising at its end (pace ≤ 0, unknown, or "
                      "stopped on a plateau): more steps alone are not shown to help; another setting might")
    steps, today, name, pace, now = min(found)
    basis = (f"the quickest learner of the sweep, {name} ({now:+.3f} from chance), at its mean validation pace "
             f"({per_100(pace)}), is {LEARNED_MARGIN:g} above chance: the positive control passes")
    return _estimate(steps, today, basis, sweep)


def censored_need(name: str, rows: Sequence[dict[str, Any]], metric: str, threshold: float,
                  curves: dict[str, list[dict]], sweep: Sequence[dict[str, Any]]) -> Need:
    """The budget at which every censored run (``rows``) of ``name``, at its pace, would reach ``metric`` ≥
    ``threshold``: the slowest one decides."""
    needed, stalled = [], []
    for row in rows:
        points = curves.get(row["run_id"], [])
        series = sorted((float(p["step"]), float(p[metric])) for p in points if p.get(metric) is not None)
        pace = run_pace(row, points, metric)
        if not series or pace is None or pace <= 0:
            stalled.append(row["seed"])
            continue
        needed.append((series[-1][0] + (threshold - series[-1][1]) / pace, row["seed"], pace))
    if stalled:
        return cannot(f"censored seed(s) {', '.join(map(str, sorted(stalled)))} of {name} were not rising at "
                      "their end (pace ≤ 0 or no curve)")
    steps, seed, pace = max(needed)
    basis = (f"the slowest censored run of {name}, seed {seed}, at its pace ({per_100(pace)}), reaches "
             f"{metric} ≥ {threshold:g}")
    return _estimate(steps, budget(rows), basis, sweep)
