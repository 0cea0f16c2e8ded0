"""Leaderboards from run rows: one ranked table per setting, with intervals, ties and paired gaps.

- One value per (config, seed): rows go through :func:`seqbench.results.one_per_cell` first, and the
  board says how many duplicates it collapsed.
- A table per (task, preset, setting): the task settings that differ between runs (a ring size, a
  length) each get their own ranking, never one list across them.
- Scores are mean ± the 95% Student-t interval over seeds; an entry's gap to the leader is the paired t
  interval over the seeds both share, Welch's otherwise (``seqbench.analyse.stats``). An entry is tied
  with the leader when its gap's t-test does not reject a zero difference at 5% after Holm's correction
  for the table's number of comparisons with the leader (statsmodels ``multipletests``): without it,
  a table of ten models would call one of them different by chance alone.
- ``tune``: keys chosen on validation (``seqbench.analyse.tuning``) before anything is ranked.
- ``length``: rank by the test at that length (``<results>/evals/``; a run trained at that length
  counts with its own test).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seqbench.analyse.stats import INTERVAL_NAMES, Interval, difference_interval, holm, mean_interval
from seqbench.analyse.tuning import tune as tune_rows
from seqbench.results import Status, config_settings, one_per_cell, varying_keys

TIED = ("tied = no difference from the leader at 5% (t-test of the gap, Holm-corrected over the table's "
        "comparisons with its leader: statsmodels multipletests)")
# the test metrics an evaluation at another length replaces in a run's row
LENGTH_METRICS = ("accuracy", "loss", "perplexity", "gate_rate", "accuracy_hard", "loss_hard", "gate_rate_hard")


@dataclass
class Entry:
    task: str
    preset: str
    setting: str  # the task settings that differ between this task's runs ("" if none): the table
    model: str
    variant: str
    model_setting: str  # model/train settings that differ between this model's runs, "" if none
    metric: str
    score: Interval
    per_seed: dict[int, float]
    not_ok: int  # diverged, failed or unsupported runs, not in the statistics
    n_params: int | None
    param_budget: int | None
    state_size: int | None
    tokens_per_sec: float | None
    gate_rate: Interval
    gate_mean: Interval  # the mean gate value beside the rate: a rate of 0 can hide gates just below tau
    accuracy_hard: Interval  # hard-gated test accuracy (gated models), else an empty interval
    tuned: dict[str, Any] = field(default_factory=dict)  # the tuned keys' chosen values
    rank: int = 0
    tied: bool | None = None  # no Holm-corrected difference from the leader; None without a test; the leader: True
    gap: Interval | None = None  # this entry minus the leader; None for the leader

    @property
    def seeds(self) -> list[int]:
        return sorted(self.per_seed)


@dataclass
class Board:
    entries: list[Entry]
    collapsed: int  # duplicate rows of a (config, seed) cell left out
    tune: tuple[str, ...] = ()
    tune_metric: str | None = None  # the validation metric the tuned keys were chosen on
    untuned: int = 0  # groups left out under --tune for lack of validation metrics
    length: int | None = None
    no_length: int = 0  # runs left out under --length: no evaluation at that length

    def tables(self) -> dict[tuple[str, str, str, str], list[Entry]]:
        out: dict[tuple[str, str, str, str], list[Entry]] = {}
        for e in self.entries:
            out.setdefault((e.task, e.preset, e.setting, e.metric), []).append(e)
        return out


def at_length(rows: list[dict[str, Any]], evals: list[dict[str, Any]], length: int,
              length_keys: Mapping[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Rows whose test metrics are those at ``length`` (an unsupported or failed length becomes the row's
    status), and how many runs have no result there at all."""
    at = {e["run_id"]: e for e in evals if e.get("seq_len") == length}
    out, missing = [], 0
    for row in rows:
        found = at.get(row["run_id"])
        if found is not None:
            status = row["status"] if found["status"] == Status.OK else found["status"]
            out.append({**row, **{m: found.get(m) for m in LENGTH_METRICS}, "status": status})
        elif config_settings(row).get(f"task.{length_keys.get(row['task'])}") == length:
            out.append(row)  # trained (and tested) at this length
        else:
            missing += 1
    return out, missing


def build(rows: list[dict[str, Any]], task: str | None = None, tune: tuple[str, ...] = (),
          length: int | None = None, evals: list[dict[str, Any]] | None = None,
          length_keys: Mapping[str, str] | None = None) -> Board:
    """Rank ``rows`` (as read, duplicates included) per (task, preset, setting)."""
    cells = one_per_cell(rows)
    rows = [r for r in cells.rows if task is None or r["task"] == task]
    tune_metric, untuned = None, 0
    if tune:
        tuned = tune_rows(rows, tune)
        rows, untuned = tuned.rows, len(tuned.skipped)
        tune_metric = ", ".join(sorted({c.metric for c in tuned.choices})) or None
    no_length = 0
    if length is not None:
        rows, no_length = at_length(rows, evals or [], length, length_keys or {})
    entries = _entries(rows, tune)
    _rank(entries)
    return Board(entries, cells.collapsed, tuple(tune), tune_metric, untuned, length, no_length)


def _label(setting: Mapping[str, Any], keys: set[str]) -> str:
    return ", ".join(f"{k}={setting.get(k)}" for k in sorted(keys))


def _entries(rows: list[dict[str, Any]], tune: tuple[str, ...]) -> list[Entry]:
    settings = [{k: v for k, v in config_settings(r).items() if k != "model.variant" and k not in tune}
                for r in rows]
    # task settings that vary within (task, preset) split the tables; other settings that vary within
    # (task, preset, model) split a model's entries
    by_task: dict[tuple, list[dict]] = {}
    by_model: dict[tuple, list[dict]] = {}
    for row, setting in zip(rows, settings, strict=True):
        by_task.setdefault((row["task"], row["preset"]), []).append(setting)
        by_model.setdefault((row["task"], row["preset"], row["model"]), []).append(setting)
    task_keys = {key: {k for k in varying_keys(s) if k.startswith("task.")} for key, s in by_task.items()}
    model_keys = {key: {k for k in varying_keys(s) if not k.startswith("task.")} for key, s in by_model.items()}

    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for row, setting in zip(rows, settings, strict=True):
        table = _label(setting, task_keys[(row["task"], row["preset"])])
        own = _label(setting, model_keys[(row["task"], row["preset"], row["model"])])
        groups.setdefault((row["task"], row["preset"], table, row["model"], row["variant"], own), []).append(
            (row, config_settings(row)))
    entries = []
    for (task, preset, table, model, variant, own), members in groups.items():
        ok = [r for r, _ in members if r["status"] == Status.OK]
        metric = "perplexity" if any(r.get("perplexity") is not None for r in ok) else "accuracy"
        per_seed = {r["seed"]: r[metric] for r in ok if r.get(metric) is not None}
        first = ok[0] if ok else members[0][0]
        entries.append(Entry(
            task=task, preset=preset, setting=table, model=model, variant=variant, model_setting=own, metric=metric,
            score=mean_interval(list(per_seed.values())), per_seed=per_seed, not_ok=len(members) - len(ok),
            n_params=first.get("n_params"), param_budget=first.get("param_budget"),
            state_size=first.get("state_size"), tokens_per_sec=_mean([r.get("tokens_per_sec") for r in ok]),
            gate_rate=mean_interval([r.get("gate_rate") for r in ok]),
            gate_mean=mean_interval([r.get("gate_mean") for r in ok]),
            accuracy_hard=mean_interval([r.get("accuracy_hard") for r in ok]),
            tuned={k: members[0][1].get(k) for k in tune},
        ))
    return entries


def _rank(entries: list[Entry]) -> None:
    def key(e: Entry):
        missing = e.score.mean is None
        value = 0.0 if missing else (e.score.mean if e.metric == "perplexity" else -e.score.mean)
        return (e.task, e.preset, _natural(e.setting), e.metric, missing, value, e.model, e.variant, e.model_setting)

    entries.sort(key=key)
    leader: Entry | None = None
    table = None
    tables: list[list[Entry]] = []
    for e in entries:
        if (e.task, e.preset, e.setting, e.metric) != table:
            table, leader, rank = (e.task, e.preset, e.setting, e.metric), e, 0
            tables.append([])
        rank += 1
        e.rank = rank
        if e is leader:
            e.tied = True if e.score.mean is not None else None
            continue
        if e.score.mean is not None and leader.score.mean is not None:
            e.gap = difference_interval(e.per_seed, leader.per_seed)
            tables[-1].append(e)
    for compared in tables:  # Holm over each table's comparisons with its leader
        tested = [e for e in compared if e.gap is not None and e.gap.p is not None]
        for e, reject in zip(tested, holm([e.gap.p for e in tested]), strict=True):
            e.tied = not reject


def _natural(label: str) -> tuple:
    """Settings in numeric order: num_nodes=20 before num_nodes=100."""
    parts = []
    for item in label.split(", "):
        name, _, value = item.partition("=")
        try:
            parts.append((name, 0, float(value), ""))
        except ValueError:
            parts.append((name, 1, 0.0, value))
    return tuple(parts)


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------------------ rendering


def render(board: Board, fmt: str) -> str:
    """The board as ``table`` (rich text), ``markdown``, ``csv`` or ``json``: csv and json carry raw numbers."""
    if fmt == "json":
        return json.dumps(_json(board), indent=2) + "\n"
    if fmt == "csv":
        return _csv(board)
    return _text(board, markdown=fmt == "markdown")


def _record(e: Entry) -> dict[str, Any]:
    return {
        "task": e.task, "preset": e.preset, "setting": e.setting, "metric": e.metric, "rank": e.rank,
        "model": e.model, "variant": e.variant, "model_setting": e.model_setting,
        "mean": e.score.mean, "low": e.score.low, "high": e.score.high, "n": e.score.n, "interval": e.score.kind,
        "seeds": e.seeds, "tied": e.tied,
        "diff_mean": e.gap.mean if e.gap else None, "diff_low": e.gap.low if e.gap else None,
        "diff_high": e.gap.high if e.gap else None, "diff_interval": e.gap.kind if e.gap else None,
        "tuned": e.tuned, "not_ok": e.not_ok, "n_params": e.n_params, "param_budget": e.param_budget,
        "state_size": e.state_size, "tokens_per_sec": e.tokens_per_sec, "gate_rate": e.gate_rate.mean,
        "gate_mean": e.gate_mean.mean, "accuracy_hard": e.accuracy_hard.mean, "accuracy_hard_low": e.accuracy_hard.low,
        "accuracy_hard_high": e.accuracy_hard.high,
    }


def _json(board: Board) -> dict[str, Any]:
    return {"collapsed_duplicates": board.collapsed, "tied": TIED, "tuned_keys": list(board.tune),
            "tuned_on": board.tune_metric, "length": board.length, "confidence": 0.95,
            "entries": [_record(e) for e in board.entries]}


def _csv(board: Board) -> str:
    out = io.StringIO()
    records = [_record(e) for e in board.entries]
    fields = list(_record(board.entries[0])) if board.entries else ["task"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "seeds": ";".join(map(str, record["seeds"])),
                         "tuned": json.dumps(record["tuned"]) if record["tuned"] else ""})
    return out.getvalue()


def _notes(board: Board) -> list[str]:
    notes = [f"{board.collapsed} duplicate row(s) collapsed: one value per (config, seed), the newest ok row"]
    if board.tune:
        notes.append(f"{', '.join(board.tune)} chosen per model on {board.tune_metric or 'validation'} "
                     "(mean over seeds); the test metric of the chosen runs is shown")
        if board.untuned:
            notes.append(f"{board.untuned} group(s) left out: no validation metrics to choose on (re-run them)")
    if board.length is not None and board.no_length:
        notes.append(f"{board.no_length} run(s) left out: not evaluated at length {board.length} "
                     "(seqbench run/sweep --eval-lengths)")
    return notes


def _cells(e: Entry, columns: list[str]) -> list[str]:
    def num(value, fmt):
        return "—" if value is None else format(value, fmt)

    gap = "leader" if e.gap is None and e.rank == 1 else (
        "—" if e.gap is None else f"{e.gap.text(sign=True)} ({e.gap.kind})")
    tied = {True: "tied" if e.rank > 1 else "", False: "", None: "?"}[e.tied]
    value = {
        "rank": str(e.rank), "model": e.model, "variant": e.variant, "model setting": e.model_setting,
        "score": e.score.text() + (f" ({e.not_ok} not ok)" if e.not_ok else ""), "tied": tied,
        "Δ to leader": gap, "seeds": str(len(e.seeds)),
        "params": num(e.n_params, ","), "state": num(e.state_size, ","),
        "tokens/s": num(e.tokens_per_sec, ",.0f"), "gate_rate": e.gate_rate.text(), "gate_mean": e.gate_mean.text(),
        "accuracy_hard": e.accuracy_hard.text(),
        "tuned": ", ".join(f"{k}={v}" for k, v in e.tuned.items()),
    }
    return [value[c] for c in columns]


def _text(board: Board, markdown: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False, color_system=None)
    at = f" at length {board.length}" if board.length is not None else ""
    for (task, preset, setting, metric), group in board.tables().items():
        columns = ["rank", "model", "variant"]
        columns += ["model setting"] if any(e.model_setting for e in group) else []
        columns += ["tuned"] if board.tune else []
        columns += ["score", "tied", "Δ to leader", "seeds", "params", "state", "tokens/s"]
        columns += ["gate_rate", "gate_mean"] if any(e.gate_rate.mean is not None for e in group) else []
        columns += ["accuracy_hard"] if any(e.accuracy_hard.mean is not None for e in group) else []
        kinds = {e.gap.kind for e in group if e.gap is not None}
        title = (f"{task} — preset {preset}{' — ' + setting if setting else ''} — {metric}{at}: "
                 f"mean ± {INTERVAL_NAMES['t']} over seeds; {TIED}; "
                 f"Δ to leader: {', '.join(INTERVAL_NAMES[k] for k in sorted(kinds)) or 'n/a'}")
        header = [metric if c == "score" else c for c in columns]
        rows = [_cells(e, columns) for e in group]
        if markdown:
            console.print(f"### {title}\n", markup=False)
            console.print("| " + " | ".join(header) + " |", markup=False)
            console.print("|" + "---|" * len(header), markup=False)
            for row in rows:
                console.print("| " + " | ".join(row) + " |", markup=False)
            console.print()
        else:
            table = Table(title=escape(title), title_justify="left")
            for name, column in zip(header, columns, strict=True):
                left = column in ("model", "variant", "model setting", "tuned")
                table.add_column(escape(name), justify="left" if left else "right")
            for row in rows:
                table.add_row(*map(escape, row))
            console.print(table)
    for note in _notes(board):
        console.print(f"note: {note}", markup=False)
    return out.getvalue()
