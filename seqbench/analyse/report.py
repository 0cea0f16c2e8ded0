"""The reproduction report: one markdown row per quantitative claim of the seed paper, with its figure.

The claims are data (``seqbench/analyse/claims/paper.json``): for each, where the paper says it (``cite``:
section or figure and a short quote), the paper's value, what to measure and the rule that decides the
verdict, and per preset the sweep that measures it. What to measure (``measure.kind``):

- ``value``: a test metric of one model (one sample per seed);
- ``difference``: one model's metric minus another's;
- ``curve``: a statistic of each seed's validation curve (``<results>/curves``), e.g. the step at
  which accuracy first reaches 0.99 as a fraction of the run, or the final gate rate over its peak
  (see ``CURVE_STATISTICS``);
- ``joint``: a statement the paper makes run by run (``measure.all``: [[metric, rule, value], ...], e.g.
  hard-gated accuracy ≥ 0.95 *and* gate rate < 6%): the fraction of runs meeting every condition;
- ``ratio``: a throughput ratio from ``seqbench bench`` rows;
- ``needs``: a claim that needs data or hardware seqbench does not have where it runs; shown with
  what it needs and the command that would measure it, never with a verdict.

A claim with ``"measure_only": true`` has no published number to hold it to (e.g. the other models
run on a calibration cell beside the published one): it is measured like any other and reads
``measured``, with no rule and no verdict. A claims file may name its document (``"document"``, default
"Reproduction") and describe itself in ``"about"`` in place of the paper line (seqbench/analyse/claims/
calibration.json: cells that others published).

Building the report only reads results; ``run_claims`` runs the claims' commands (resumable sweeps
and benchmarks) through seqbench's own command line first.

Verdicts: ``supported`` when the whole 95% interval satisfies the claim's ``supported`` rule,
``contradicted`` when the whole interval satisfies its ``contradicted`` rule, ``inconclusive``
otherwise (or with fewer seeds than ``min_seeds``, or at a preset not in ``decisive_presets``: the
smoke preset checks plumbing, not claims), ``not yet measured`` when no row matches. Then the verdict
gate (seqbench.analyse.gate): ``budget-limited`` when the runs could not decide it at their budget (a
loser still improving, a task no model learned, a first passage some runs never reached: censored,
never scored as 1.0), ``needs a re-run`` when the rows lack a column the claim needs (e.g.
``val_accuracy_hard`` to tune a hard-gated claim on). Intervals and their wording come from
seqbench.analyse.stats (bounded, "k/n solved", sign-flip tests). A budget-limited claim states what it
would take: the budget that would likely decide it, from its runs' pace, and its cost here
(seqbench.analyse.budget_need).

The document opens with a summary (seqbench.analyse.summary): per claim group its verdicts, the claims
not yet measured, the rows' cost in core-hours, and, given an earlier rendering (``since``), which
verdicts changed since it and why.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import math
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.analyse.budget_need import censored_need, control_need, loser_need
from seqbench.analyse.gate import (
    BUDGET_LIMITED,
    NEEDS_RERUN,
    RISING,
    improving_runs,
    learner_groups,
    losing_sides,
    positive_control,
)
from seqbench.analyse.plots import curves_file, make_plots, setting_file, throughput_file
from seqbench.analyse.stages import (
    is_tuning_run,
    rerun_seeds,
    setting_matches,
    stage_keys,
    staged_seeds,
    tune_seeds,
    tune_set_problem,
    tuning_only,
    verdict_rows,
)
from seqbench.analyse.stats import (
    INTERVAL_NAMES,
    describe_difference,
    describe_values,
    difference_interval,
    mean_interval,
    proportion_interval,
)
from seqbench.analyse.summary import Earlier, summary_lines
from seqbench.analyse.tuning import tune
from seqbench.configure.budget import parse_param_count
from seqbench.configure.config import split_scope
from seqbench.errors import UserError
from seqbench.registry import PRESETS, check_preset
from seqbench.results import Status, config_settings, iter_rows, read_bench, read_cells, read_curves

RULES = {
    "at_least": ("≥ {0:g}", lambda lo, hi, a: lo >= a),
    "above": ("> {0:g}", lambda lo, hi, a: lo > a),
    "at_most": ("≤ {0:g}", lambda lo, hi, a: hi <= a),
    "below": ("< {0:g}", lambda lo, hi, a: hi < a),
    "within": ("within [{0:g}, {1:g}]", lambda lo, hi, a, b: a <= lo and hi <= b),
    "outside": ("outside [{0:g}, {1:g}]", lambda lo, hi, a, b: hi < a or lo > b),
}
KINDS = ("value", "difference", "curve", "joint", "ratio", "needs")
NEEDS = "needs"
MEASURED = "measured"  # a measure_only claim's verdict: measured, held to no rule


@dataclass
class Measured:
    verdict: str  # supported | contradicted | inconclusive | budget-limited | needs a re-run | not yet measured
    text: str  # the measured value with its interval, or why there is none
    seeds: str  # seeds (or bench rows) behind it
    mean: float | None = None
    why: str | None = None  # budget-limited: why, and what it would need
    sides: list[dict] = field(default_factory=list)  # the sides measured, their chosen rows and metrics
    picked: list[list[dict]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    censored: list[dict] = field(default_factory=list)  # a curve claim's runs that never reached its threshold
    need: str | None = None  # budget-limited: what it would take, in brief (seqbench.analyse.budget_need)


# --------------------------------------------------------------------------------- claims


def load_claims(path: Path | None = None) -> dict[str, Any]:
    """The claims file (default: the seed paper's, shipped in the package), checked for shape."""
    try:
        if path is None:
            text = importlib.resources.files("seqbench.analyse").joinpath("claims/paper.json").read_text()
        else:
            text = Path(path).read_text()
        claims = json.loads(text)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 text
        raise UserError(f"cannot read the claims file {path or 'seqbench/analyse/claims/paper.json'}: {exc}") from None
    check_claims(claims, path or "seqbench/analyse/claims/paper.json")
    return claims


def check_claims(claims: Any, path: Path | str) -> None:
    """The shape the report reads: a mistake in a claims file is named here, not met as a crash later."""
    def fail(what: str) -> None:
        raise UserError(f"claims file {path}: {what} (see seqbench/analyse/claims/paper.json for the format)")

    if not isinstance(claims, dict) or not isinstance(claims.get("claims"), list):
        fail('expected an object with a "claims" list')
    if not isinstance(claims.get("paper"), dict):
        fail("lacks 'paper' (an object: title, author, affiliation, date)")
    for n, claim in enumerate(claims["claims"]):
        if not isinstance(claim, dict):
            fail(f"claim #{n} is not an object")
        where = f"claim {claim.get('id', f'#{n}')!r}"
        for key in ("id", "claim", "cite", "paper_value", "measure", "presets"):
            if key not in claim:
                fail(f"{where} lacks {key!r}")
        if "group" in claim and not (isinstance(claim["group"], str) and claim["group"].strip()):
            fail(f"{where}: group must be a non-empty string (the summary's line it counts in), got "
                 f"{json.dumps(claim['group'])}")
        measure = claim["measure"]
        if not isinstance(measure, dict) or measure.get("kind") not in KINDS:
            fail(f"{where}: measure.kind must be one of {', '.join(KINDS)}")
        if not isinstance(claim["presets"], dict) or not all(isinstance(b, dict) for b in claim["presets"].values()):
            fail(f"{where}: presets must map a preset name to an object")
        chosen = claim.get("tune_seed", 0)
        if not (isinstance(chosen, int) or (isinstance(chosen, list) and chosen
                                            and all(isinstance(s, int) for s in chosen))):
            fail(f"{where}: tune_seed must be a seed or a list of seeds, got {json.dumps(chosen)}")
        for name, block in claim["presets"].items():
            problem = tune_set_problem(claim, block)
            if problem:
                fail(f"{where}: presets.{name}: {problem}")
            if "params" in block:
                try:
                    parse_param_count(block["params"])
                except UserError:
                    fail(f"{where}: presets.{name}.params must be a parameter count such as 100k, got "
                         f"{json.dumps(block['params'])}")
        if measure["kind"] == NEEDS:
            if not measure.get("what"):
                fail(f"{where}: a needs claim must say what it needs (measure.what)")
            continue
        for side in ("a", "b"):
            if side in measure and not (isinstance(measure[side], dict) and "model" in measure[side]):
                fail(f"{where}: measure.{side} must be an object naming a model")
        for verdict in () if claim.get("measure_only") else ("supported", "contradicted"):
            rule = claim.get(verdict)
            arity = 2 if isinstance(rule, list) and rule and rule[0] in ("within", "outside") else 1
            if (not isinstance(rule, list) or not rule or rule[0] not in RULES or len(rule) != 1 + arity
                    or not all(isinstance(v, int | float) for v in rule[1:])):
                fail(f"{where}: {verdict} must be [RULE, {'LOW, HIGH' if arity == 2 else 'VALUE'}] with RULE one "
                     f"of {', '.join(RULES)}, got {json.dumps(rule)}")
        if measure["kind"] == "joint" and not (
                isinstance(measure.get("all"), list) and measure["all"]
                and all(isinstance(c, list) and len(c) == 3 and c[1] in RULES for c in measure["all"])):
            fail(f"{where}: a joint claim needs measure.all: [[METRIC, RULE, VALUE], ...] with RULE one of "
                 f"{', '.join(RULES)}")
        if measure["kind"] == "curve" and measure.get("statistic", {}).get("name") not in CURVE_STATISTICS:
            fail(f"{where}: measure.statistic.name must be one of {', '.join(CURVE_STATISTICS)}")


def rule_text(rule: list) -> str:
    return RULES[rule[0]][0].format(*rule[1:])


def rule_holds(rule: list, low: float, high: float) -> bool:
    return bool(RULES[rule[0]][1](low, high, *rule[1:]))


def commands(claim: dict[str, Any], preset: str, results: Path) -> list[str]:
    """The exact commands that measure ``claim`` at ``preset``."""
    block = claim["presets"].get(preset)
    if block is None:
        return []
    if "commands" in block:
        return [f"{c} --results {shlex.quote(str(results))}" for c in block["commands"]]
    sweep = claim["sweep"]
    seeds, staged = block.get("seeds", "0"), staged_seeds(claim, block)
    parts = ["seqbench sweep", f"--models {sweep['models']}", f"--tasks {sweep['tasks']}",
             f"--seeds {staged[0] if staged else seeds}"]
    if sweep.get("variants"):
        parts.append(f"--variants {sweep['variants']}")
    parts += [f"--set {item}" for item in [*block.get("set", []), *(tuning_only(block) if staged else [])]]
    parts += [f"--grid {item}" for item in block.get("grid", [])]
    parts += [f"--params {block['params']}"] if block.get("params") else []
    parts += [f"--preset {preset}", f"--results {shlex.quote(str(results))}"]
    if not staged:
        return [" ".join(parts)]
    tuned = " ".join(f"--set {key}=CHOSEN" for key in claim["tune"])
    at = f"seed{'s' if ',' in staged[0] else ''} {staged[0]}"
    without = f" and without {', '.join(tuning_only(block))}" if tuning_only(block) else ""
    rerun = ("; again at a tuning seed whose run there stopped on that plateau" if tuning_only(block) else "")
    return [" ".join(parts), f"then, per model, at seed(s) {staged[1]}: the same sweep without the "
            f"{', '.join(claim['tune'])} grid{without}, with {tuned} (the value chosen on validation at {at}){rerun}"]


def grid_size(items: list[str]) -> int:
    """Cells per seed of grid items (``KEY=V1,V2,...``): the product of their value counts."""
    return math.prod(len(item.partition("=")[2].split(",")) for item in items)


def cell_progress(claim: dict[str, Any], runs: list[dict], preset: str) -> dict[str, tuple[int, int]] | None:
    """Per model of the claim's sweep, ``(cells finished, cells it runs)`` at ``preset``, keyed by what
    identifies those cells (so claims sharing cells, e.g. the GCN's on the ring and in its controls, can
    be counted once); a finished cell is a row of any status (a failed or diverged cell ran). None for a
    claim without a sweep (benchmarks, needs).

    A model runs its grid at every seed of the block, or, for a claim tuned at some seeds
    (``tune_seed``), the grid at those seeds and at each other seed one cell per value of the grid's
    untuned axes (the rate chosen there). A document rendered while a run is under way so says how much
    of each claim's evidence is in."""
    block = claim["presets"].get(preset)
    sweep = claim.get("sweep")
    if block is None or not sweep or "commands" in block or claim["measure"]["kind"] == NEEDS:
        return None
    seeds = {int(s) for s in str(block.get("seeds", "0")).split(",")}
    tuned = [item for item in block.get("grid", []) if item.partition("=")[0] in claim.get("tune", [])]
    tuning = tune_seeds(claim) if staged_seeds(claim, block) else None
    per_seed = grid_size(block.get("grid", []))
    untuned = per_seed // grid_size(tuned)
    expected = (per_seed * len(seeds) if tuning is None
                else per_seed * len(seeds & tuning) + untuned * len(seeds - tuning))
    variants = {"default", *str(sweep.get("variants") or "").split(",")}
    progress = {}
    for model in sweep["models"].split(","):
        rows = [r for r in select_runs(runs, claim, preset, {"model": model}, finished=True)
                if r["seed"] in seeds and r["variant"] in variants]
        # what a model's cells are: its settings (scoped ones of other models and "=none" filters, which
        # match the default, left out), grid, seeds, budget and staging
        sets = sorted(item for scope, item in map(split_scope, block.get("set", []))
                      if scope in (None, model) and not item.lower().endswith(("=none", "=null")))
        key = json.dumps([model, sweep["tasks"], sorted(variants), sets, block.get("grid", []), sorted(seeds),
                          block.get("params"), sorted(tuning) if tuning else None, tuning_only(block)])
        progress[key] = (min(len(rows), expected), expected)
    return progress


def chosen_seed_commands(claims: dict[str, Any], preset: str, results: Path) -> list[list[str]]:
    """The second stage of claims that tune at some seeds (``tune_seed``): per model of the sweep, the
    other seeds at the values chosen on validation at the tuning seeds (seqbench.analyse.tuning), as
    seqbench argv lists. Run after the first stage's sweeps; a model whose grid at the tuning seeds is
    not finished yet (a cell still running elsewhere, or interrupted) gets none: a choice among part of
    the grid would not be the grid's."""
    runs = [r for r in read_cells(results)[0] if r["preset"] == preset] if results.is_dir() else []
    seen: dict[str, list[str]] = {}
    for claim in claims["claims"]:
        block = claim["presets"].get(preset, {})
        staged = staged_seeds(claim, block)
        if staged is None or claim["measure"]["kind"] == NEEDS:
            continue
        sweep, axes = claim["sweep"], [item.partition("=")[0] for item in block.get("grid", [])]
        for model in sweep["models"].split(","):
            tuning = tune_seeds(claim) or set()
            ran = [r for r in select_runs(runs, claim, preset, {"model": model}, finished=True) if r["seed"] in tuning
                   and (is_tuning_run(r, claim, block) or not tuning_only(block))]
            rows = [r for r in ran if r["status"] == Status.OK]
            if not rows or len(ran) < grid_size(block.get("grid", [])) * len(tuning):
                continue
            on = tune_metric(claim, [str(claim["measure"].get("metric"))])
            chosen = tune(rows, claim["tune"], metric=on, ignore=stage_keys(block))
            for choice in chosen.choices:
                fixed = [f"{key}={choice.values[key] if key in choice.values else choice.group[key]}" for key in axes]
                mine = [r for r in chosen.rows if all(str(config_settings(r).get(k)) == str(v)
                                                      for k, v in choice.group.items() if "." in k)]
                seeds = ",".join([*map(str, rerun_seeds(mine, claim, block)), staged[1]])
                argv = ["sweep", "--models", model, "--tasks", sweep["tasks"], "--seeds", seeds]
                if sweep.get("variants"):  # the variants this model ran: the sweep's list may name others' only
                    argv += ["--variants", ",".join(sorted({str(r["variant"]) for r in mine}))]
                for item in [*block.get("set", []), *fixed]:
                    argv += ["--set", item]
                argv += ["--params", str(block["params"])] if block.get("params") else []
                argv += ["--preset", preset, "--results", str(results)]
                seen.setdefault(" ".join(argv), argv)
    return list(seen.values())


# ---------------------------------------------------------------------------- measurement


def _matches(row: dict[str, Any], flat: dict[str, str], sets: list[str]) -> bool:
    wanted: dict[str, str] = {}
    for item in sets:
        scope, item = split_scope(item)
        if scope is not None and scope != row["model"]:
            continue  # e.g. transformer:model.n_layers=1 says nothing about the GCN's rows
        key, _, value = item.partition("=")
        # a later item wins, as in the run's own config: gru:train.max_steps=6000 after train.max_steps=2000
        wanted[key.strip()] = value
    return all(setting_matches(flat.get(key), value) for key, value in wanted.items())


def select_runs(runs: list[dict], claim: dict, preset: str, side: dict[str, Any],
                finished: bool = False) -> list[dict]:
    """Ok rows of one model (and variant) on the claim's task at ``preset``, matching the preset block's
    ``set`` items and its parameter budget (``params``: the rows' ``param_budget``, the --params their
    width was solved for); the rows are one per (config, seed) already (seqbench.results.one_per_cell).
    ``finished``: rows of any status (a failed or diverged cell is finished too), to count what has run."""
    measure = claim["measure"]
    block = claim["presets"].get(preset, {})
    budget = parse_param_count(block["params"]) if block.get("params") else None
    chosen = []
    for row in runs:
        if (row["status"] != Status.OK and not finished) or row["task"] != measure["task"] or row["preset"] != preset:
            continue
        if row.get("param_budget") != budget:
            continue
        if row["model"] != side["model"] or ("variant" in side and row["variant"] != side["variant"]):
            continue
        flat = {key: str(value) for key, value in config_settings(row).items()}
        # "require": settings the paper used (e.g. its lambda schedule) that a row must have to count;
        # a claim's tuning stage adds its own (tune_set: seqbench.analyse.stages)
        if (_matches(row, flat, [*block.get("set", []), *side.get("require", [])])
                or (is_tuning_run(row, claim, block)
                    and _matches(row, flat, [*block.get("set", []), *tuning_only(block), *side.get("require", [])]))):
            chosen.append((row, flat))
    if "at" in side and chosen:
        values = {float(flat.get(side["key"], "nan")) for _, flat in chosen}
        target = (min if side["at"] == "smallest" else max)(v for v in values if not math.isnan(v))
        chosen = [(r, flat) for r, flat in chosen if math.isclose(float(flat.get(side["key"], "nan")), target)]
    return [row for row, _ in chosen]


def sweep_rows(runs: list[dict], claim: dict, preset: str) -> list[dict]:
    """Every row of the claim's sweep at ``preset`` (each model of it, every grid value and seed): what its
    command runs, and so what rerunning it at another budget costs."""
    return [r for model in claim.get("sweep", {}).get("models", "").split(",") if model
            for r in select_runs(runs, claim, preset, {"model": model})]


def tune_metric(claim: dict, metrics: list[str]) -> str | None:
    """The validation column a claim's side is tuned on: the claim's ``measure.tune_on``, else
    ``val_accuracy_hard`` when the side reads the hard-gated pass, else None (the task's selection
    metric, validation accuracy): a claim is tuned on what it measures."""
    if claim["measure"].get("tune_on"):
        return claim["measure"]["tune_on"]
    return "val_accuracy_hard" if any(str(m).endswith("_hard") for m in metrics if m) else None


def rows_for_statistics(rows: list[dict], claim: dict, metric: str | None = None,
                        preset: str | None = None) -> tuple[list[dict], str | None]:
    """THE ONE PLACE where rows are filtered before statistics: ``(rows, None)`` or ``([], why not)``.

    A claim with ``"tune": ["train.lr"]`` was swept over those settings; its statistics use the setting
    with the best mean validation ``metric`` over seeds (:func:`seqbench.analyse.tuning.tune`; None: the
    task's selection metric), never the test metric. Rows that still differ in a tuned setting because
    they lack that validation column are not measured ("needs a re-run: rows lack ..."), rather than
    measured on a mix of settings or chosen on another metric. A claim with a tuning stage of its own
    (``tune_set`` at ``preset``) reads one row per seed (seqbench.analyse.stages.verdict_rows).
    """
    block = claim["presets"].get(preset, {}) if preset else {}
    tuned = [k for k in claim.get("tune", []) if any(k in config_settings(r) for r in rows)]
    settings = {tuple(str(config_settings(r).get(k)) for k in tuned) for r in rows}
    if len(settings) <= 1:  # one setting: nothing to choose
        return verdict_rows(rows, claim, block), None
    chosen = tune(rows, tuned, metric=metric, on_seeds=tune_seeds(claim), ignore=stage_keys(block))
    if chosen.skipped:
        if metric:
            return [], f"{NEEDS_RERUN}: rows lack {metric} (the validation metric this claim is tuned on)"
        return [], (f"rows differ in {', '.join(tuned)} ({len(settings)} settings) and lack the validation "
                    "metrics to choose one on")
    return verdict_rows(chosen.rows, claim, block), None


# Curve statistics: each takes one run's evaluation points (dicts with "step" and metrics, sorted by
# step), the run's max_steps and the statistic's parameters, and gives one number per seed (None: this
# run does not qualify, e.g. a sparsification claim on a run that never solved the task; CENSORED: the
# event it times never happened within the run).

CENSORED = math.inf


def _series(points: list[dict], metric: str) -> list[tuple[float, float]]:
    return [(p["step"], p[metric]) for p in points if p.get(metric) is not None]


def _solved(points: list[dict], when: dict | None) -> bool:
    """The run's last evaluation meets ``when`` ({"metric": m, "at_least": x}), or there is no condition."""
    if not when:
        return True
    series = _series(points, when["metric"])
    return bool(series) and series[-1][1] >= when["at_least"]


def _first_fraction_reaching(points, max_steps, metric, threshold, **_):
    """The first evaluation step at which ``metric >= threshold``, as a fraction of the run; CENSORED when
    it never got there: that run's first passage lies beyond its budget, unobserved, not at 1.0."""
    return next((step / max_steps for step, value in _series(points, metric) if value >= threshold), CENSORED)


def _at_fraction(points, max_steps, metric, fraction, **_):
    """``metric`` at the evaluation nearest ``fraction`` of the run."""
    series = _series(points, metric)
    return min(series, key=lambda sv: abs(sv[0] - fraction * max_steps))[1] if series else None


def _peak_fraction(points, max_steps, metric, **_):
    """Where ``metric`` peaks, as a fraction of the run (the first step of the maximum)."""
    series = _series(points, metric)
    return max(series, key=lambda sv: (sv[1], -sv[0]))[0] / max_steps if series else None


def _end_over_peak(points, max_steps, metric, **_):
    """``metric`` at the last evaluation over its maximum (0 peak: None)."""
    series = _series(points, metric)
    peak = max((v for _, v in series), default=0.0)
    return series[-1][1] / peak if peak > 0 else None


CURVE_STATISTICS = {
    "first_fraction_reaching": _first_fraction_reaching,
    "at_fraction": _at_fraction,
    "peak_fraction": _peak_fraction,
    "end_over_peak": _end_over_peak,
}


def curve_statistic(statistic: dict[str, Any], points: list[dict], max_steps: int) -> float | None:
    """One run's value of a curve statistic; None when the run does not meet the statistic's ``when``."""
    points = sorted((p for p in points if p.get("accuracy") is not None), key=lambda p: p["step"])
    if not points or not _solved(points, statistic.get("when")):
        return None
    params = {k: v for k, v in statistic.items() if k not in ("name", "when")}
    return CURVE_STATISTICS[statistic["name"]](points, max_steps, **params)


def _curve_values(rows: list[dict], curves: dict[str, list[dict]], statistic: dict) -> tuple[dict[int, float], int]:
    """Seed -> value of a curve statistic (CENSORED included), and how many rows did not qualify (no curve,
    or ``when`` unmet)."""
    values, skipped = {}, 0
    for row in rows:
        max_steps = int(config_settings(row).get("train.max_steps") or row.get("steps") or 1)
        value = curve_statistic(statistic, curves.get(row["run_id"], []), max_steps)
        if value is None:
            skipped += 1
        else:
            values[row["seed"]] = value
    return values, skipped


def _side_name(side: dict[str, Any]) -> str:
    name = side["model"] + (f"/{side['variant']}" if "variant" in side else "")
    return name + (f" at the {side['at']} {side['key']}" if "at" in side else "")


def interval(values: dict[int, float], other: dict[int, float] | None = None) -> tuple[float, float | None, str]:
    """Mean (or difference of means) of seed -> value maps and its 95% half-width, with the interval's name
    (seqbench.analyse.stats: Student t for one model; for a difference the paired t interval over shared
    seeds, Welch otherwise). None half-width without an interval. The claims table writes them through
    :func:`seqbench.analyse.stats.describe_values`, which keeps them inside the values' bounds."""
    if other is None:
        stat, name = mean_interval(list(values.values())), INTERVAL_NAMES["t"]
    else:
        stat = difference_interval(values, other)
        name = INTERVAL_NAMES[stat.kind] + " of the difference"
    half = None if stat.low is None else (stat.high - stat.low) / 2
    return stat.mean, half, name


BOUNDED_METRICS = ("accuracy", "accuracy_hard", "gate_rate", "gate_rate_hard", "gate_mean", "gate_mean_hard")


def _bounds(metric: str, minus_chance: bool, difference: bool) -> tuple[float, float] | None:
    """What a claim's value cannot leave: [0, 1] for accuracies and gate rates, [-1, 1] for a difference
    of them or an accuracy less chance; None (unbounded) for losses and the like."""
    if metric not in BOUNDED_METRICS:
        return None
    return (-1.0, 1.0) if difference or minus_chance else (0.0, 1.0)


def _side_metrics(measure: dict, sides: list[dict]) -> list[str]:
    """The metric each side reads (a difference may compare two, e.g. TGN's hard-gated accuracy with
    Mamba's accuracy); for a curve, the statistic's metric; for a joint claim, its first condition's."""
    if measure["kind"] == "curve":
        return [measure["statistic"]["metric"]]
    if measure["kind"] == "joint":
        return [measure["all"][0][0]]
    metrics = measure.get("metric", [])
    return metrics if isinstance(metrics, list) else [metrics] * len(sides)


def measure_runs(claim: dict, runs: list[dict], preset: str, min_seeds: int,
                 curves: dict[str, list[dict]] | None = None) -> Measured:
    measure = claim["measure"]
    kind = measure["kind"]
    if kind in ("value", "curve", "joint"):
        sides = [{k: v for k, v in measure.items() if k in ("model", "variant", "at", "key", "require")}]
    else:
        sides = [measure["a"], measure["b"]]
    metrics = _side_metrics(measure, sides)
    picked, candidates = [], []
    for side, metric in zip(sides, metrics, strict=True):
        reads = [metric]
        if kind == "curve":
            reads.append(measure["statistic"].get("when", {}).get("metric"))
        if kind == "joint":
            reads = [c[0] for c in measure["all"]]
        candidates.append(select_runs(runs, claim, preset, side))
        rows, why_not = rows_for_statistics(candidates[-1], claim, tune_metric(claim, reads), preset)
        if why_not:
            verdict = NEEDS_RERUN if why_not.startswith(NEEDS_RERUN) else "inconclusive"
            return Measured(verdict, f"{_side_name(side)}: {why_not}", "—")
        if len({r["variant"] for r in rows}) > 1:
            return Measured("inconclusive", f"{_side_name(side)} has runs of several variants; name one in the claim",
                            "—")
        picked.append(rows)
    note = _chosen_note(claim, sides, picked, candidates)
    if kind == "joint":
        result = _measure_joint(claim, picked[0], min_seeds, note)
    elif kind == "curve":
        result = _measure_curve(claim, sides[0], picked[0], curves or {}, min_seeds, note)
    else:
        result = _measure_values(claim, sides, picked, metrics, min_seeds, note)
    result.sides, result.picked, result.metrics = sides, picked, metrics
    return result


def _measure_values(claim: dict, sides: list[dict], picked: list[list[dict]], metrics: list[str], min_seeds: int,
                    note: str) -> Measured:
    measure = claim["measure"]
    minus_chance = measure.get("minus_chance", False)
    values = [_metric_values(rows, metric, minus_chance) for rows, metric in zip(picked, metrics, strict=True)]
    if any(not v for v in values):
        what = "/".join(dict.fromkeys(metrics)) + (" and chance" if minus_chance else "")
        missing = [_side_name(s) for s, v in zip(sides, values, strict=True) if not v]
        return Measured("not yet measured", f"no ok runs of {', '.join(missing)} with {what}{note}", "0")
    seeds = "/".join(str(len(v)) for v in values)
    difference = measure["kind"] == "difference"
    bounds = _bounds(metrics[0], minus_chance, difference)
    if difference:
        described = describe_difference(*values, bounds=bounds)
    else:
        solved = metrics[0] in ("accuracy", "accuracy_hard") and not minus_chance
        described = describe_values(list(values[0].values()), bounds=bounds, solved_outcome=solved)
    text = described.text + _gate_means(measure, metrics, picked)
    if min(len(v) for v in values) < min_seeds or described.low is None:
        return Measured("inconclusive", f"{text} (fewer than {min_seeds} seeds, or no interval: no verdict){note}",
                        seeds, described.mean)
    return _decide(claim, text + note, seeds, described.mean, described.low, described.high)


def _gate_means(measure: dict, metrics: list[str], picked: list[list[dict]]) -> str:
    """"; gate_mean 0.041": the mean gate value beside a gate rate, since a rate of 0 can hide gates that
    sit just below the threshold."""
    parts = []
    for metric, rows in zip(metrics, picked, strict=True):
        if metric.startswith("gate_rate"):
            column = metric.replace("gate_rate", "gate_mean")
            mean = mean_interval([r.get(column) for r in rows]).mean
            if mean is not None:
                parts.append(f"{column} {mean:.3f}")
    return f"; {', '.join(parts)}" if parts else ""


def _measure_curve(claim: dict, side: dict, rows: list[dict], curves: dict[str, list[dict]], min_seeds: int,
                   note: str) -> Measured:
    statistic = claim["measure"]["statistic"]
    values, skipped = _curve_values(rows, curves, statistic)
    when = statistic.get("when")
    if skipped and rows:
        note += (f"; {skipped} of {len(rows)} runs left out (" +
                 (f"final {when['metric']} < {when['at_least']:g}" if when else "no curve") + ")")
    if not values and rows and when:
        # runs exist, but none met the claim's precondition (e.g. never solved hard-gated): measured, undecided
        return Measured("inconclusive", f"no run of {_side_name(side)} qualifies{note}", "0")
    if not values:
        return Measured("not yet measured", f"no ok runs of {_side_name(side)} with {statistic['name']}{note}", "0")
    censored = sorted(seed for seed, v in values.items() if v == CENSORED)
    if censored:
        # survival analysis, not a stand-in: the runs that never got there are counted, not scored
        reached = [v for v in values.values() if v != CENSORED]
        text = (f"{len(reached)} of {len(values)} reached {statistic['metric']} ≥ {statistic['threshold']:g}"
                + (f", median fraction {statistics.median(reached):.3f} among those" if reached else "")
                + f"; seed(s) {', '.join(map(str, censored))} never did within the run (censored){note}")
        why = (f"{len(censored)} of {len(values)} runs of {_side_name(side)} never reached "
               f"{statistic['metric']} ≥ {statistic['threshold']:g} within the run: their first passage lies beyond "
               "the budget")
        return Measured(BUDGET_LIMITED, text, str(len(values)), None, why=why,
                        censored=[r for r in rows if values.get(r["seed"]) == CENSORED])
    described = describe_values(list(values.values()), bounds=(0.0, 1.0), solved_outcome=False)
    if len(values) < min_seeds or described.low is None:
        return Measured("inconclusive", f"{described.text} (fewer than {min_seeds} seeds: no verdict){note}",
                        str(len(values)), described.mean)
    return _decide(claim, described.text + note, str(len(values)), described.mean, described.low, described.high)


def _measure_joint(claim: dict, rows: list[dict], min_seeds: int, note: str) -> Measured:
    """A statement the paper makes run by run ("100% accuracy at a 5.5% gate rate"): the fraction of runs
    meeting every condition of ``measure.all`` ([[metric, rule, value], ...]) at once."""
    conditions = claim["measure"]["all"]
    columns = [c[0] for c in conditions]
    usable = [r for r in rows if all(r.get(c) is not None for c in columns)]
    if not usable:
        return Measured("not yet measured", f"no ok runs with {', '.join(columns)}{note}", "0")
    met = [r for r in usable if all(rule_holds([rule, value], r[c], r[c]) for c, rule, value in conditions)]
    k, n = len(met), len(usable)
    low, high = proportion_interval(k, n)
    stated = " and ".join(f"{c} {rule_text([rule, value])}" for c, rule, value in conditions)
    per_run = "; ".join(
        f"seed {r['seed']}: " + ", ".join(f"{c} {r[c]:.3f}" for c in columns)
        + "".join(f", {g} {r[g]:.3f}" for g in (c.replace("gate_rate", "gate_mean") for c in columns
                                                 if c.startswith("gate_rate")) if r.get(g) is not None)
        for r in sorted(usable, key=lambda r: r["seed"]))
    text = f"{k}/{n} runs meet {stated} (Clopper-Pearson 95% {low:.2f}–{high:.2f}); {per_run}{note}"
    if n < min_seeds:
        return Measured("inconclusive", f"{text} (fewer than {min_seeds} seeds: no verdict)", str(n), k / n)
    return _decide(claim, text, str(n), k / n, k / n, k / n)


def _chosen_note(claim: dict, sides: list[dict], picked: list[list[dict]], candidates: list[list[dict]]) -> str:
    """"; chosen on validation: tgn/serial train.lr=0.003, gru train.lr=0.001": what the tuning kept, with a
    warning when the value is the edge of its grid (the best may lie beyond it)."""
    keys = claim.get("tune", [])
    parts = []
    for side, rows, before in zip(sides, picked, candidates, strict=True):
        settings = [config_settings(r) for r in rows]  # parsed once per row, not once per key
        grid_settings = [config_settings(r) for r in before]
        chosen = {k: sorted({str(s[k]) for s in settings if k in s}) for k in keys}
        values = " ".join(f"{k}={'/'.join(v)}" for k, v in chosen.items() if v)
        grid = {k: sorted({float(s[k]) for s in grid_settings if isinstance(s.get(k), int | float)}) for k in keys}
        edges = [k for k, v in chosen.items() if len(v) == 1 and len(grid.get(k, [])) >= 3
                 and float(v[0]) in (grid[k][0], grid[k][-1])]
        values += " (grid edge: the best may lie outside it)" if edges else ""
        if values:
            parts.append(values if len(sides) == 1 else f"{_side_name(side)} {values}")
    return f"; chosen on validation: {', '.join(parts)}" if parts else ""


def _metric_values(rows: list[dict], metric: str, minus_chance: bool) -> dict[int, float]:
    """Seed -> value; with ``minus_chance`` the metric less the row's chance level (rows lacking either
    are left out)."""
    if minus_chance:
        return {r["seed"]: r[metric] - r["chance"] for r in rows
                if r.get(metric) is not None and r.get("chance") is not None}
    return {r["seed"]: r[metric] for r in rows if r.get(metric) is not None}


def measure_bench(claim: dict, bench: list[dict], preset: str) -> Measured:
    measure = claim["measure"]
    seq_len = claim["presets"].get(preset, {}).get("seq_len")
    found = []
    for side in (measure["a"], measure["b"]):
        rows = [r for r in bench if r["model"] == side["model"] and r["preset"] == preset
                and r["mode"] == measure["mode"] and r["seq_len"] == seq_len
                and ("variant" not in side or r["variant"] == side["variant"])
                and _same_rate(r.get("forced_gate_rate"), side.get("forced_gate_rate"))]
        if not rows:
            return Measured("not yet measured", f"no bench row of {_bench_name(side)} ({measure['mode']}, "
                                                f"L={seq_len}, preset {preset})", "0")
        found.append(max(rows, key=lambda r: r["started_at"]))
    a, b = found
    for side, row in zip((measure["a"], measure["b"]), found, strict=True):
        if row["status"] != Status.OK:
            return Measured("inconclusive", f"{_bench_name(side)} was {row['status']} at L={seq_len}", "1/1")
    ratio = a[measure["metric"]] / b[measure["metric"]]
    text = (f"{ratio:.2f}x ({a[measure['metric']]:,.0f} / {b[measure['metric']]:,.0f} tokens/s, L={seq_len}, "
            f"{a['device']}; medians, no interval)")
    return _decide(claim, text, "1/1 bench rows", ratio, ratio, ratio)


def _same_rate(have: float | None, want: float | None) -> bool:
    if want is None:
        return have is None
    return have is not None and math.isclose(have, want)


def _bench_name(side: dict[str, Any]) -> str:
    name = side["model"] + (f"/{side['variant']}" if "variant" in side else "")
    return name + (f" (gate rate forced to {side['forced_gate_rate']:.0%})" if "forced_gate_rate" in side else "")


def _decide(claim: dict, text: str, seeds: str, mean: float, low: float, high: float) -> Measured:
    if claim.get("measure_only"):
        verdict = MEASURED
    elif rule_holds(claim["supported"], low, high):
        verdict = "supported"
    elif rule_holds(claim["contradicted"], low, high):
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Measured(verdict, text, seeds, mean)


def evaluate(claim: dict, runs: list[dict], bench: list[dict], preset: str, min_seeds: int,
             decisive: bool = True, curves: dict[str, list[dict]] | None = None) -> Measured:
    """The claim's measurement at ``preset``; a non-decisive preset (smoke) never gives a verdict, nor
    does a claim that needs what seqbench does not have here."""
    measure = claim["measure"]
    if measure["kind"] == NEEDS:
        return Measured(NEEDS, f"needs {measure['what']}", "—")
    if measure["kind"] == "ratio":
        result = measure_bench(claim, bench, preset)
    else:
        result = measure_runs(claim, runs, preset, min_seeds, curves=curves)
        if result.censored:  # longer runs would observe the first passages: how much longer
            statistic = claim["measure"]["statistic"]
            need = censored_need(_side_name(result.sides[0]), result.censored, statistic["metric"],
                                 statistic["threshold"], curves or {}, sweep_rows(runs, claim, preset))
            result.why, result.need = f"{result.why}; {need.text}", need.short
        if decisive:
            gate(claim, result, runs, preset, curves or {})
    if not decisive and result.verdict in ("supported", "contradicted"):
        result.text += f" — would be {result.verdict}, but preset {preset} decides nothing"
        result.verdict = "inconclusive"
    return result


def gate(claim: dict, result: Measured, runs: list[dict], preset: str, curves: dict[str, list[dict]]) -> None:
    """The verdict gate (seqbench.analyse.gate): a verdict stands only where the runs behind it could decide
    it at this budget; otherwise ``result`` becomes budget-limited (or needs a re-run), saying why."""
    if result.verdict in ("supported", "contradicted", "inconclusive", NEEDS_RERUN):
        # first: on a task nothing learned, no choice of setting and no re-run at this budget decides it
        why = positive_control(runs, claim, preset)
        if why:
            result.text += f" — would be {result.verdict}" if result.verdict in ("supported", "contradicted") else ""
            groups = learner_groups(runs, claim["measure"]["task"], preset, claim["sweep"]["models"].split(","))
            result.verdict = BUDGET_LIMITED
            need = control_need(groups, curves, sweep_rows(runs, claim, preset))
            result.why, result.need = f"{why}; {need.text}", need.short
            return
    if result.verdict not in ("supported", "contradicted"):
        return
    for index in losing_sides(claim, result.verdict, result.metrics):
        name = _side_name(result.sides[index])
        improving, unknown = improving_runs(result.picked[index], curves)
        if improving:
            rule = claim[result.verdict]
            winner = ((result.picked[1 - index], result.metrics[1 - index])
                      if claim["measure"]["kind"] == "difference" else None)
            need = loser_need(name, result.picked[index], result.metrics[index], result.mean, rule[1], rule_text(rule),
                              curves, sweep_rows(runs, claim, preset), winner=winner)
            result.text += f" — would be {result.verdict}"
            result.verdict = BUDGET_LIMITED
            result.why = f"{name} still improving at the budget: {'; '.join(e.text() for e in improving)}; {need.text}"
            result.need = need.short
            return
        if unknown:
            result.text += f" — would be {result.verdict}"
            result.verdict = NEEDS_RERUN
            result.why = (f"rows of {name} (seed(s) {', '.join(map(str, unknown))}) lack stop_reason and val_trend "
                          "and have no curve: whether they had finished learning is unknown")
            return


def claim_commands(claims: dict[str, Any], preset: str, results: Path) -> list[list[str]]:
    """Every command the measurable claims name at ``preset`` (each once, in claim order) as seqbench argv lists:
    what ``seqbench report --run`` runs before rendering. Sweeps skip cells that have a row, so running
    them again finishes only what is missing."""
    seen: dict[str, list[str]] = {}
    for claim in claims["claims"]:
        if claim["measure"]["kind"] == NEEDS:  # its commands need what this machine lacks
            continue
        for command in commands(claim, preset, results):
            argv = shlex.split(command)
            if argv[0] == "seqbench":
                seen.setdefault(command, argv[1:])
    return list(seen.values())


# ---------------------------------------------------------------------------- sensitivity


def _on_edge(chosen: dict[str, Any], candidates: list[dict[str, Any]]) -> list[str]:
    """The tuned keys whose chosen value is the smallest or largest of at least three numeric candidates:
    the best value may lie outside the grid (a narrow learning-rate window is common: arXiv 2508.19029)."""
    edges = []
    for key, value in chosen.items():
        numbers = sorted({c[key] for c in candidates if isinstance(c.get(key), int | float)})
        if len(numbers) >= 3 and isinstance(value, int | float) and value in (numbers[0], numbers[-1]):
            edges.append(f"{key}={value:g} is the grid's {'smallest' if value == numbers[0] else 'largest'}")
    return edges


def sensitivity(claim: dict, runs: list[dict], preset: str) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """Per side of a tuned claim: (title, tuned-on metric, header, rows) with every grid value's validation
    score and test result beside the chosen one, the chosen one marked (and flagged on the grid's edge)."""
    measure, keys = claim["measure"], claim.get("tune", [])
    if not keys or measure["kind"] not in ("value", "difference", "curve", "joint"):
        return []
    sides = ([{k: v for k, v in measure.items() if k in ("model", "variant", "at", "key", "require")}]
             if measure["kind"] != "difference" else [measure["a"], measure["b"]])
    tables = []
    for side, metric in zip(sides, _side_metrics(measure, sides), strict=True):
        rows = select_runs(runs, claim, preset, side)
        tuned = [k for k in keys if any(k in config_settings(r) for r in rows)]
        if not rows or not tuned:
            continue
        reads = [c[0] for c in measure["all"]] if measure["kind"] == "joint" else [
            metric, measure.get("statistic", {}).get("when", {}).get("metric")]
        on = tune_metric(claim, reads)
        block = claim["presets"].get(preset, {})
        chosen = tune(rows, tuned, metric=on, on_seeds=tune_seeds(claim), ignore=stage_keys(block))
        test_metric = metric if measure["kind"] != "curve" else None
        body = []
        # the groups chosen in, and those skipped for lack of the validation column (shown, with no choice)
        groups = [(c.group, c.scores, c.values, c.to_target) for c in chosen.choices] + [
            (g, None, None, {}) for g in chosen.skipped]
        for group, scores, picked, to_target in groups:
            group_rows = [r for r in rows if all(config_settings(r).get(k) == v for k, v in group.items()
                                                 if "." in k and k not in tuned)]
            label = ", ".join(f"{k}={v}" for k, v in group.items() if k.startswith("task.")
                              and len({str(config_settings(r).get(k)) for r in rows}) > 1)
            values = sorted({json.dumps({k: config_settings(r).get(k) for k in tuned}, sort_keys=True)
                             for r in group_rows}, key=lambda v: str(json.loads(v)))
            edges = _on_edge(picked, [json.loads(v) for v in values]) if picked else []
            best = (scores or {}).get(json.dumps(picked, sort_keys=True)) if picked else None
            tie = best is not None and sum(math.isclose(sc, best) for sc in scores.values() if sc is not None) > 1
            raced = json.dumps(picked, sort_keys=True) in to_target and len(to_target) > 1
            for value_json in values:
                value = json.loads(value_json)
                score = (scores or {}).get(value_json)
                members = [r for r in group_rows if all(config_settings(r).get(k) == v for k, v in value.items())]
                if value == picked:  # the seeds the verdict reads (a claim's tuning stage: one row per seed)
                    members = verdict_rows(members, claim, block)
                test = mean_interval([r.get(test_metric) for r in members]).mean if test_metric else None
                notes = ([_race_note(to_target)] if raced and value == picked else
                         ["tie on validation, broken by the lower val_loss"] if tie else []) + [
                    f"{edge}: the best may lie outside it" for edge in edges]
                mark = ("**chosen**" + (f" ({'; '.join(notes)})" if notes else "") if value == picked else
                        "" if picked else f"no choice: rows lack {on}")
                cells = [label or "—", _value_text(value), "—" if score is None else f"{score:.3f}"]
                cells += ["—" if test is None else f"{test:.3f}"] if test_metric else []
                body.append([*cells, str(len(members)), mark])
        title = f"{_side_name(side)} on {measure['task']}"
        header = ["setting", "value", f"{chosen.choices[0].metric if chosen.choices else on} (validation, mean)",
                  *([f"{test_metric} (test, mean)"] if test_metric else []), "seeds", ""]
        tables.append((title, on or "the task's selection metric", header, body))
    return tables


def _race_note(to_target: dict[str, float]) -> str:
    """Why a value was chosen among several whose tuning runs all stopped at the target."""
    fastest = sorted(to_target.items(), key=lambda item: item[1])
    steps = ", ".join(f"{_value_text(json.loads(v))}: {s:,.0f}" for v, s in fastest)
    return (f"{len(to_target)} values stopped at the target at every tuning seed, where validation is censored: "
            f"the fewest mean steps to it chosen ({steps})")


def _value_text(value: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())


def sensitivity_section(claims: dict, runs: list[dict], preset: str) -> list[str]:
    """The report's tuning sensitivity tables, one per distinct (side, tuned-on metric, test metric)."""
    seen: dict[str, tuple[list[str], list[str]]] = {}
    order: list[str] = []
    for claim in claims["claims"]:
        for title, on, header, body in sensitivity(claim, runs, preset):
            key = json.dumps([title, on, header, body])
            if key not in seen:
                seen[key] = ([], [f"### {title}: tuned on {on}", "", "| " + " | ".join(header) + " |",
                                  "|" + "---|" * len(header), *("| " + " | ".join(map(_cell, b)) + " |" for b in body)])
                order.append(key)
            seen[key][0].append(claim["id"])
    if not order:
        return []
    lines = ["## Tuning sensitivity", "",
             "Every grid value's validation score (what chose it) and test result beside the chosen one; a choice "
             "on the grid's edge is flagged.", ""]
    for key in order:
        ids, table = seen[key]
        lines += [table[0] + f" (claims: {', '.join(ids)})", *table[1:], ""]
    return lines


# -------------------------------------------------------------------------------- markdown


def figure_for(claim: dict[str, Any], preset: str) -> str | None:
    """The file name of the figure that shows ``claim``'s evidence (see seqbench.analyse.plots)."""
    measure = claim["measure"]
    if measure["kind"] == NEEDS:
        return None
    if measure["kind"] == "ratio":
        return throughput_file(measure["mode"], preset)
    grid = claim["presets"].get(preset, {}).get("grid", [])
    if any(item.startswith("task.num_nodes=") for item in grid) and measure["kind"] != "curve":
        return setting_file("num_nodes", measure["task"], preset)
    return curves_file(measure["task"], preset)


def _curves_by_run(results: Path, on_unreadable) -> dict[str, list[dict]]:
    by_run: dict[str, list[dict]] = {}
    for point in iter_rows(read_curves(results, on_unreadable=on_unreadable)):
        if point.get("accuracy") is not None:  # evaluation points, not per-step training points
            by_run.setdefault(point["run_id"], []).append(point)
    return by_run


def _provenance(runs: list[dict], bench: list[dict]) -> tuple[str, str, str]:
    """Total wall time, machines and code versions behind the rows."""
    seconds = sum(r.get("wall_time_s") or 0.0 for r in runs) + sum(r.get("wall_time_s") or 0.0 for r in bench)
    machines = sorted({str(r["device"]) for r in [*runs, *bench] if r.get("device")})
    shas = sorted({str(r["git_sha"]) for r in runs if r.get("git_sha")})
    # Runs of a sweep overlap (--jobs), so the sum exceeds the time a reader waits: give the span too.
    starts = [r["started_at"] for r in [*runs, *bench] if r.get("started_at") is not None]
    ends = [r["started_at"] + dt.timedelta(seconds=r.get("wall_time_s") or 0.0)
            for r in [*runs, *bench] if r.get("started_at") is not None]
    span = (f"; {(max(ends) - min(starts)).total_seconds() / 3600:.2f} h from the first row's start to the last "
            f"row's end ({min(starts):%Y-%m-%d %H:%M} to {max(ends):%H:%M} UTC)") if starts else ""
    return (f"{seconds:,.0f} s = {seconds / 3600:.2f} h summed over the rows{span}", ", ".join(machines) or "—",
            ", ".join(shas) or "—")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def build_report(claims: dict[str, Any], results: Path, preset: str = "default", on_unreadable=None,
                 out: Path | None = None, command: str | None = None, since: Earlier | None = None) -> str:
    """The markdown document, opening with its summary (seqbench.analyse.summary; with ``since``, what
    changed since that earlier rendering). With ``out`` (the markdown's path) the figures are written
    beside it, in ``<out stem>_figures/``, and linked relatively."""
    check_preset(preset)
    cells, collapsed = read_cells(results, on_unreadable=on_unreadable)
    runs = [r for r in cells if r["preset"] == preset]
    bench = [r for r in iter_rows(read_bench(results, on_unreadable=on_unreadable)) if r["preset"] == preset]
    curves = _curves_by_run(results, on_unreadable)
    min_seeds = int(claims.get("min_seeds", 2))
    decisive = claims.get("decisive_presets", list(PRESETS))
    figures: dict[str, str] = {}
    if out is not None:
        folder = out.parent / f"{out.stem}_figures"
        tune_keys = tuple(key for claim in claims["claims"] for key in claim.get("tune", []))  # as the verdicts use
        written = make_plots(results, folder, on_unreadable=on_unreadable, note=lambda _: None, preset=preset,
                             tune=tune_keys)
        figures = {path.name: f"{folder.name}/{path.name}" for path in written}
        # the folder is the document's own: a figure of this preset that an earlier rendering drew and
        # this one does not (its rows not in yet) would sit there unlinked, looking current
        for stale in folder.glob(f"*_{preset}.png"):
            if stale.name not in figures:
                stale.unlink()
    paper = claims["paper"]
    wall, machines, shas = _provenance(runs, bench)
    command = command or f"seqbench report --results {results} --preset {preset} --run --out {out or 'FILE.md'}"
    lines = [
        f"# {claims.get('document', 'Reproduction')}: {paper['title']}",
        "",
        claims.get("about") or (f"Paper: *{paper['title']}*, {paper['author']}, {paper['affiliation']}, "
                                f"{paper['date']}. {paper.get('note', '')}"),
        "",
        "## Scale",
        "",
        claims.get("scales", {}).get(preset, f"Preset **{preset}** (no description in the claims file)."),
        "",
        "## How this was produced",
        "",
        f"- Command (runs what is missing, then renders this file): `{command}`",
        f"- Results: `{results}`, preset **{preset}**: {len(runs)} run rows, {len(bench)} bench rows",
        f"- Wall time: {wall}",
        f"- Machine (rows' device column): {machines}",
        f"- Code (rows' git_sha): {shas}",
        f"- Rendered {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        claims.get("note", ""),
        "",
        "Intervals: one value per (config, seed) (duplicate rows collapse to the newest ok row"
        + (f"; {collapsed} collapsed here" if collapsed else "") + "); one model's metric (or a curve statistic) "
        "is mean ± the 95% Student-t interval over seeds, kept inside what the value can take ([0, 1] for "
        "accuracies, gate rates and fractions of a run; written [low, high] where the bound cuts it); seeds "
        "that split into solved (≥ 0.9) and failed (≤ 0.5) runs also read 'k/n solved' with the exact "
        "Clopper-Pearson interval (scipy.stats.binomtest) and the median; seeds that all agree read "
        "'3/3 seeds at 1.000' (no spread, no interval). A difference between two models is mean ± the paired "
        "95% t-interval over the seeds both share (Welch's interval otherwise), with the exact sign-flip test "
        "over the pairs (scipy.stats.permutation_test) and the smallest difference that many pairs detect at "
        "80% power (statsmodels TTestPower, in standard deviations of the differences). A claim with tuned "
        "keys uses, per model, the value with the best mean validation metric it reads (val_accuracy_hard "
        "for the hard-gated pass; never the test's), where values whose every tuning run stopped at "
        "the accuracy target (validation censored at it) rank first, by fewer mean steps to it; throughput "
        "ratios are of median step times (no interval).",
        "",
        "How each run ended: a row's stop_reason and val_trend (seqbench.train.stopping), or, for rows from "
        "before those columns, its committed curve (such runs ran to their budget: no early stopping existed). "
        f"A run still improving by more than {RISING:g} over the last 20% of evaluations at its budget has not "
        "finished learning; a verdict that calls it the loser is budget-limited (seqbench.analyse.gate).",
        "",
        "## Claims",
        "",
        "| claim | paper says | paper value | measured | seeds | verdict | rule | figure | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    outcomes: list[tuple[dict, Measured]] = []
    for claim in claims["claims"]:
        result = evaluate(claim, runs, bench, preset, min_seeds, decisive=preset in decisive, curves=curves)
        outcomes.append((claim, result))
        if claim["measure"]["kind"] == NEEDS:
            rule = "—"
        elif claim.get("measure_only"):
            rule = "— (measured beside the published cell: no published number)"
        else:
            rule = f"supported if {rule_text(claim['supported'])}; contradicted if {rule_text(claim['contradicted'])}"
        block = claim["presets"].get(preset, {})
        setting = ", ".join([*block.get("set", []), *block.get("grid", [])])
        command_cell = "<br>".join(f"`{c}`" if c.startswith("seqbench") else c
                                   for c in commands(claim, preset, results)) or "(none at this preset)"
        name = figure_for(claim, preset)
        figure = f"[{name}]({figures[name]})" if name in figures else "—"
        cite = claim["cite"]
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"**{claim['id']}**: {claim['claim']}{f' ({setting})' if setting else ''}",
            f"{cite['where']}: “{cite['quote']}”", claim["paper_value"],
            result.text + (f" — {result.why}" if result.why else ""), result.seeds,
            f"**{result.verdict}**", rule, figure, command_cell)) + " |")
    counts: dict[str, int] = {}
    for _, result in outcomes:
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())), ""]
    if figures:
        lines += ["## Figures", ""]
        for name, link in figures.items():
            shown = [c["id"] for c, _ in outcomes if figure_for(c, preset) == name]
            lines += [f"### {name}" + (f" (claims: {', '.join(shown)})" if shown else ""), "", f"![{name}]({link})", ""]
    limited = [(c, r) for c, r in outcomes if r.verdict == BUDGET_LIMITED]
    if limited:
        lines += ["## Budget-limited claims", "",
                  "The evidence cannot decide these at this budget; each says what it would need: the budget that "
                  "would likely decide it, a linear extrapolation of its runs' pace over the last 20% of evaluations "
                  "(a lower bound, since curves flatten), and what that costs here, in core-hours against one day "
                  "of this CPU (seqbench.analyse.budget_need).", ""]
        lines += [f"- **{c['id']}**: {r.why}" for c, r in limited]
        lines.append("")
    lines += sensitivity_section(claims, runs, preset)
    lines += ["## Closing note", ""]
    for claim, result in outcomes:
        if result.verdict != NEEDS:
            lines.append(f"- **{claim['id']}**: {result.verdict} — {result.text}"
                         + (f" — {result.why}" if result.why else ""))
    needs = [(c, r) for c, r in outcomes if r.verdict == NEEDS]
    if needs:
        lines += ["", "Still needing data or hardware:", ""]
        lines += [f"- **{c['id']}** ({c['cite']['where']}, paper: {c['paper_value']}): {r.text}" for c, r in needs]
    lines.append("")
    at = lines.index("## Scale")  # the summary opens the document: after its title and the paper line
    progress = {c["id"]: cell_progress(c, runs, preset) for c, _ in outcomes}
    lines[at:at] = summary_lines(claims, outcomes, runs, bench, preset, since, progress)
    return "\n".join(lines)
