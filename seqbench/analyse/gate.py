"""The verdict gate: whether a claim's evidence can decide it at the budget the runs had.

A verdict that a model fails, stays at chance or loses is only as good as the training behind it:
a run that was still improving when ``train.max_steps`` stopped it says "not yet", not "cannot".
So, before a claim is called supported or contradicted (seqbench.analyse.report):

- **positive control**: on a task where no model of the claim's sweep beats chance by
  LEARNED_MARGIN (mean test accuracy over seeds, per model and setting), nothing was learned at this
  budget, and every claim on the task is budget-limited;
- **still improving**: the model a verdict calls the loser (the model of a value claim that says it
  is low, the lower side of a difference) must have stopped on a plateau or a target, or ended at the
  budget with its validation metric flat (``val_trend`` within RISING over the last 20% of
  evaluations); otherwise the verdict is budget-limited, naming the runs still improving and by how much.

How a run ended comes from its row (``stop_reason``, ``val_trend``: seqbench.train.stopping) or, for
rows written before those columns existed, from its committed curve: such runs had no early
stopping, so they ended at the budget, and their trend is read from the curve the same way. A run
with neither is named as needing a re-run, never assumed flat.

What a budget-limited claim would take (the budget that would likely decide it, and its cost) is
seqbench.analyse.budget_need's, from the same curves.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from seqbench.results import Status, config_settings
from seqbench.train.stopping import trend_window

RISING = 0.01  # a gain above this over the last 20% of evaluations: still learning
LEARNED_MARGIN = 0.1  # test accuracy this far above chance: the model learned something of the task
BUDGET_LIMITED = "budget-limited"
NEEDS_RERUN = "needs a re-run"
UPPER_RULES = ("at_most", "below")  # rules that say a value is low
LOWER_RULES = ("at_least", "above")  # rules that say a value is high
LEARNING_METRICS = ("accuracy", "accuracy_hard")  # where a low value means a model that did not learn


@dataclass(frozen=True)
class Ending:
    """How one run ended, as the gate reads it."""

    seed: int
    stop_reason: str | None  # None: unknown (no column, no curve)
    trend: float | None  # change over the last 20% of evaluations (signed so that up is better)
    per_tenth: float | None  # the same per 10% of training (None without a curve to measure the span on)
    last_step: int | None

    @property
    def improving(self) -> bool:
        return self.stop_reason == "budget" and self.trend is not None and self.trend > RISING

    def text(self) -> str:
        pace = f" ({self.per_tenth:+.3f} per 10% of training)" if self.per_tenth is not None else ""
        at = f" at step {self.last_step}" if self.last_step is not None else ""
        return f"seed {self.seed} {self.trend:+.3f} over the last 20% of evaluations{pace}{at}"


def run_ending(row: dict[str, Any], points: list[dict[str, Any]]) -> Ending:
    """How ``row``'s run ended, from its columns or else its curve's evaluation points."""
    lm = row.get("perplexity") is not None  # language modelling: the loss is what improves
    metric, sign = ("loss", -1.0) if lm else ("accuracy", 1.0)
    reason = row.get("stop_reason")
    if reason is None:  # rows from before early stopping existed ran to their budget unless they diverged
        reason = "diverged" if row.get("status") == Status.DIVERGED else "budget"
    series = sorted((float(p["step"]), float(p[metric])) for p in points if p.get(metric) is not None)
    window = trend_window(series)
    max_steps = int(config_settings(row).get("train.max_steps") or row.get("steps") or 1)
    last = int(series[-1][0]) if series else row.get("steps")
    if window is not None:
        change, span = window
        per_tenth = sign * change / span * 0.1 * max_steps if span > 0 else None
        return Ending(row["seed"], reason, sign * change, per_tenth, last)
    if row.get("val_trend") is not None:
        return Ending(row["seed"], reason, sign * row["val_trend"], None, last)
    return Ending(row["seed"], None if row.get("stop_reason") is None else reason, None, None, last)


def losing_sides(claim: dict[str, Any], verdict: str, metrics: list[str]) -> list[int]:
    """Indices of the claim's sides (0: the model, or a; 1: b) that ``verdict`` calls the loser: those
    must have finished learning for the verdict to stand. Only learning metrics (accuracy) count: a low
    gate rate is not a model failing."""
    measure = claim["measure"]
    if measure["kind"] not in ("value", "difference") or verdict not in ("supported", "contradicted"):
        return []
    if not all(m in LEARNING_METRICS for m in metrics):
        return []
    rule = claim[verdict][0]
    if measure["kind"] == "value":
        return [0] if rule in UPPER_RULES else []
    return [0] if rule in UPPER_RULES else [1] if rule in LOWER_RULES else []


def improving_runs(rows: list[dict[str, Any]], curves: dict[str, list[dict]]) -> tuple[list[Ending], list[int]]:
    """(runs still improving at the budget, seeds whose ending is unknown)."""
    endings = [run_ending(r, curves.get(r["run_id"], [])) for r in rows]
    unknown = [e.seed for e in endings if e.stop_reason is None or (e.stop_reason == "budget" and e.trend is None)]
    return [e for e in endings if e.improving], unknown


def learner_groups(runs: list[dict[str, Any]], task: str, preset: str, models: list[str]
                   ) -> list[tuple[str, list[dict[str, Any]]]]:
    """The ok rows of ``models`` on ``task`` with accuracy and chance, grouped per model and setting
    (all seeds of one configuration together), each with a readable name: the model and the settings that
    vary between the groups (``mamba at train.lr=0.01``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for row in runs:
        if (row["status"] != Status.OK or row["task"] != task or row["preset"] != preset or row["model"] not in models
                or row.get("accuracy") is None or row.get("chance") is None):
            continue
        setting = config_settings(row)
        key = json.dumps([row["model"], row["variant"], setting], sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
        settings[key] = setting
    named = []
    for key, rows in groups.items():
        model, variant, _ = json.loads(key)
        # the settings that tell this group from the model's other groups (its grid values)
        siblings = [settings[k] for k in groups if json.loads(k)[:2] == [model, variant]]
        varying = sorted({k for s in siblings for k in s
                          if len({json.dumps(o.get(k), default=str) for o in siblings}) > 1})
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k in varying if (v := settings[key].get(k)) is not None)
        named.append((f"{model}{'' if variant == 'default' else '/' + variant}" + (f" at {shown}" if shown else ""),
                      rows))
    return named


def margin(rows: list[dict[str, Any]]) -> float:
    """Mean test accuracy less chance over a group's seeds."""
    return statistics.mean(r["accuracy"] - r["chance"] for r in rows)


def best_learner(runs: list[dict[str, Any]], task: str, preset: str, models: list[str]) -> tuple[str, float] | None:
    """The model (and setting) of ``models`` whose mean test accuracy over seeds is furthest above chance
    on ``task``, with that margin; None when no ok row has accuracy and chance."""
    groups = learner_groups(runs, task, preset, models)
    if not groups:
        return None
    name, rows = max(groups, key=lambda group: margin(group[1]))
    return name, margin(rows)


def positive_control(runs: list[dict[str, Any]], claim: dict[str, Any], preset: str) -> str | None:
    """Why every claim on the claim's task is budget-limited (no model of its sweep learned the task),
    or None when one did (or the claim has no task and sweep to check)."""
    measure, sweep = claim["measure"], claim.get("sweep")
    if not sweep or "task" not in measure:
        return None
    best = best_learner(runs, measure["task"], preset, sweep["models"].split(","))
    if best is None or best[1] > LEARNED_MARGIN:
        return None
    return (f"no model learned the task at this budget: the best, {best[0]}, is {best[1]:+.3f} from chance "
            f"(a learner beats it by > {LEARNED_MARGIN:g})")
