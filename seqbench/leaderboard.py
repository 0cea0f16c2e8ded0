"""Aggregate run rows into per-task leaderboards: mean ± 95% interval over seeds.

The interval is Student's t on the per-seed values: mean ± t(0.975, n-1) · s / sqrt(n). With one seed
there is no interval and it is shown as "± n/a".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from scipy import stats

from seqbench.results import Status, config_settings, varying_keys

GROUP_KEYS = ("task", "preset", "model", "variant")


@dataclass
class Stat:
    mean: float | None
    half_width: float | None  # 95% interval half-width; None with fewer than two values
    n: int

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return "—"
        hw = "n/a" if self.half_width is None else f"{self.half_width:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {hw}"


def mean_interval(values: list[float], confidence: float = 0.95) -> Stat:
    values = [v for v in values if v is not None and not math.isnan(v)]
    n = len(values)
    if n == 0:
        return Stat(None, None, 0)
    mean = statistics.mean(values)  # exact rational arithmetic: equal values give a zero-width interval
    if n < 2:
        return Stat(mean, None, n)
    sd = statistics.stdev(values)
    return Stat(mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n), n)


@dataclass
class Entry:
    task: str
    preset: str
    model: str
    variant: str
    setting: str  # the task/model settings that vary within this task's table, "" if none
    metric: str
    score: Stat
    seeds: int
    not_ok: int  # diverged or failed runs, not in the statistics
    n_params: int | None
    tokens_per_sec: float | None
    gate_rate: Stat


def build(rows: list[dict[str, Any]], task: str | None = None) -> list[Entry]:
    """Entries ranked per (task, preset) by the task's metric (accuracy up, perplexity down)."""
    rows = [r for r in rows if task is None or r["task"] == task]
    settings = [{k: v for k, v in config_settings(r).items() if k != "model.variant"} for r in rows]
    # A setting key is shown when it varies between runs of the same task, preset and model.
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for row, setting in zip(rows, settings):
        by_key.setdefault((row["task"], row["preset"], row["model"]), []).append(setting)
    varying = {key: varying_keys(same) for key, same in by_key.items()}

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row, setting in zip(rows, settings):
        shown = varying[(row["task"], row["preset"], row["model"])]
        label = ", ".join(f"{k}={setting[k]}" for k in sorted(shown))
        groups.setdefault((*(row[k] for k in GROUP_KEYS), label), []).append(row)

    entries = []
    for (task_name, preset, model, variant, label), members in groups.items():
        ok = [r for r in members if r["status"] == Status.OK]
        metric = "perplexity" if any(r.get("perplexity") is not None for r in ok) else "accuracy"
        entries.append(Entry(
            task=task_name, preset=preset, model=model, variant=variant, setting=label, metric=metric,
            score=mean_interval([r.get(metric) for r in ok]), seeds=len({r["seed"] for r in ok}),
            not_ok=len(members) - len(ok),
            n_params=ok[0]["n_params"] if ok else None,
            tokens_per_sec=_mean([r.get("tokens_per_sec") for r in ok]),
            gate_rate=mean_interval([r.get("gate_rate") for r in ok]),
        ))

    def rank_key(e: Entry):
        score = e.score.mean
        missing = score is None
        value = 0.0 if missing else (score if e.metric == "perplexity" else -score)
        return (e.task, e.preset, missing, value, e.model, e.variant, e.setting)

    return sorted(entries, key=rank_key)


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
