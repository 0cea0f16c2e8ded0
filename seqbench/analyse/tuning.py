"""Choosing hyperparameters on validation (``--tune train.lr``): zoology and MAD report the best of a
learning-rate grid; seqbench chooses it on the validation split and reports the test split.

Within each group of runs that agree on everything but the tuned keys and the seed (task, preset,
model, variant and every other setting), runs are split by their tuned keys' values; the values with
the best mean validation metric over their seeds win (``val_accuracy`` up, or ``val_perplexity`` /
``val_loss`` down for language modelling; a tie goes to the lower mean ``val_loss``), and only those
runs are kept. A run that stopped at its target (``train.stop_at``) has a validation score censored at
that threshold: it stopped on crossing it, so two such rates differ on the score by where the last
evaluation fell, not by how well they learn (zoology's MQAR grid: 0.99200 at 2,744 steps against
0.99175 at 1,323). Values whose every counted run stopped at the target therefore rank above the rest
on a metric the target watched (``WATCHED``), and among themselves by fewer mean steps to it.
A claim chooses on the metric it reads (``metric``: ``val_accuracy_hard`` for hard-gated accuracy): a
soft-accuracy tie broken by validation loss once picked a rate whose gate never opened. Test metrics
take no part in the choice. Rows must already be one per cell (:func:`seqbench.results.one_per_cell`).

``on_seeds``: choose on these seeds' runs only and keep every seed's runs of the choice. Where a grid
at every seed does not fit (zoology's MQAR cell: ~15 minutes a run on one core), the grid runs at one
seed and the chosen value at the others (seqbench.analyse.report's ``tune_seed``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from seqbench.analyse.stats import mean_interval
from seqbench.errors import UserError
from seqbench.results import Status, config_settings

IDENTITY = ("task", "preset", "model", "variant")
# the validation metrics a target stop watches (seqbench.train.stopping.monitored): accuracy, or the
# loss (and so perplexity) for language modelling; never the hard-gated pass's accuracy
WATCHED = ("val_accuracy", "val_loss", "val_perplexity")


@dataclass(frozen=True)
class Choice:
    group: dict[str, Any]  # what the group shares: task, preset, model, variant and the other settings
    values: dict[str, Any]  # the chosen value of each tuned key
    metric: str  # the validation metric it was chosen on
    scores: dict[str, float | None] = field(default_factory=dict)  # each candidate (as JSON) -> mean score
    # the candidates whose every counted run stopped at its target (as JSON) -> mean steps to it; on a
    # watched metric these rank first, fewest steps best
    to_target: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Tuned:
    rows: list[dict[str, Any]]  # the chosen runs (ok or not) of every group
    choices: list[Choice]
    skipped: list[dict[str, Any]] = field(default_factory=list)  # groups without validation metrics: left out


def selection_metric(rows: list[dict[str, Any]]) -> tuple[str, bool]:
    """The validation column to choose on and whether higher is better."""
    if any(r.get("val_perplexity") is not None or r.get("perplexity") is not None for r in rows):
        return "val_perplexity", False
    if any(r.get("val_accuracy") is not None for r in rows):
        return "val_accuracy", True
    return "val_loss", False


def tune(rows: list[dict[str, Any]], keys: list[str] | tuple[str, ...], metric: str | None = None,
         on_seeds: set[int] | None = None, ignore: tuple[str, ...] = ()) -> Tuned:
    """Keep, per group, the runs of the tuned keys' values with the best mean validation metric:
    ``metric`` (higher is better, e.g. ``val_accuracy_hard`` for a claim on hard-gated accuracy) or the
    task's selection metric. A group none of whose runs has the metric is skipped, never chosen on
    another metric. ``ignore``: settings that do not split groups (a claim's tuning stage stops on a
    plateau where its other seeds do not: seqbench.analyse.stages)."""
    keys = list(dict.fromkeys(keys))
    settings = [config_settings(r) for r in rows]
    known = set().union(*settings) if settings else set()
    for key in keys:
        if key not in known:
            raise UserError(f"--tune {key}: no run has that setting; tune a SECTION.KEY the runs vary, e.g. "
                            "train.lr (settings: model.*, task.*, train.*)")
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for row, setting in zip(rows, settings, strict=True):
        rest = {k: v for k, v in setting.items() if k not in keys and k not in ignore}
        group = {**{k: row.get(k) for k in IDENTITY}, **rest}
        groups.setdefault(json.dumps(group, sort_keys=True, default=str), []).append((row, setting))

    kept: list[dict[str, Any]] = []
    choices: list[Choice] = []
    skipped: list[dict[str, Any]] = []
    for group_key, members in groups.items():
        chosen_on, higher = (metric, True) if metric else selection_metric([r for r, _ in members])
        candidates: dict[str, list[tuple[dict, dict]]] = {}
        for row, setting in members:
            value = json.dumps({k: setting.get(k) for k in keys}, sort_keys=True)
            candidates.setdefault(value, []).append((row, setting))
        def counted(row: dict[str, Any]) -> bool:
            return row.get("status") == Status.OK and (on_seeds is None or row.get("seed") in on_seeds)

        scores = {value: mean_interval([r.get(chosen_on) for r, _ in runs if counted(r)]).mean
                  for value, runs in candidates.items()}
        scored = [v for v, s in scores.items() if s is not None]
        if len(candidates) == 1:  # nothing to choose between: no validation metric needed
            scored = list(candidates)
        if not scored:  # no run of the group has a validation metric (e.g. rows from before it was recorded)
            skipped.append(json.loads(group_key))
            continue
        to_target = _steps_to_target(candidates, scored, counted) if chosen_on in WATCHED else {}
        # Ties on the metric (several rates all at val_accuracy 1.0) go to the lower mean validation loss,
        # still a validation quantity; then to the value's text, so the choice never depends on row order.
        losses = {v: mean_interval([r.get("val_loss") for r, _ in candidates[v] if counted(r)]).mean for v in scored}
        ranks = {v: (1, -to_target[v], 0.0, v) if v in to_target  # censored: how fast it got there is left
                 else (0, (scores[v] or 0.0) if higher else -(scores[v] or 0.0),
                       -losses[v] if losses[v] is not None else -math.inf, v) for v in scored}
        best = max(scored, key=ranks.__getitem__)
        kept += [row for row, _ in candidates[best]]
        choices.append(Choice(json.loads(group_key), json.loads(best), chosen_on, scores, to_target))
    return Tuned(kept, choices, skipped)


def _steps_to_target(candidates: dict[str, list[tuple[dict, dict]]], scored: list[str],
                     counted: Any) -> dict[str, float]:
    """Mean steps of the candidates whose counted runs (at least one) all stopped at their target."""
    reached: dict[str, float] = {}
    for value in scored:
        runs = [row for row, _ in candidates[value] if counted(row)]
        if runs and all(r.get("stop_reason") == "target" and r.get("steps") is not None for r in runs):
            reached[value] = sum(float(r["steps"]) for r in runs) / len(runs)
    return reached



