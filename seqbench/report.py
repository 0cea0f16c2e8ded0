"""The reproduction report: one markdown row per quantitative claim of the seed paper.

The claims are data (``seqbench/claims/paper.json``): for each, the paper's value, what to measure
(a metric of one model, a difference between two models, or a throughput ratio from the benchmark),
the rule that decides the verdict, and per preset the sweep that measures it. This module only reads
results; it never runs anything.

Verdicts: ``supported`` when the whole 95% interval satisfies the claim's ``supported`` rule,
``contradicted`` when the whole interval satisfies its ``contradicted`` rule, ``inconclusive``
otherwise (or with fewer seeds than ``min_seeds``, or at a preset not in ``decisive_presets``: the
smoke preset checks plumbing, not claims), ``not yet measured`` when no row matches.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.errors import UserError
from seqbench.results import Status, config_settings, iter_rows, read_bench, read_cells
from seqbench.stats import INTERVAL_NAMES, difference_interval, mean_interval

RULES = {
    "at_least": ("≥ {0:g}", lambda lo, hi, a: lo >= a),
    "above": ("> {0:g}", lambda lo, hi, a: lo > a),
    "at_most": ("≤ {0:g}", lambda lo, hi, a: hi <= a),
    "below": ("< {0:g}", lambda lo, hi, a: hi < a),
    "within": ("within [{0:g}, {1:g}]", lambda lo, hi, a, b: a <= lo and hi <= b),
    "outside": ("outside [{0:g}, {1:g}]", lambda lo, hi, a, b: hi < a or lo > b),
}
KINDS = ("value", "difference", "ratio")


@dataclass
class Measured:
    verdict: str  # supported | contradicted | inconclusive | not yet measured
    text: str  # the measured value with its interval, or why there is none
    seeds: str  # seeds (or bench rows) behind it
    mean: float | None = None


# --------------------------------------------------------------------------------- claims


def load_claims(path: Path | None = None) -> dict[str, Any]:
    """The claims file (default: the seed paper's, shipped in the package), checked for shape."""
    try:
        if path is None:
            text = importlib.resources.files("seqbench").joinpath("claims/paper.json").read_text()
        else:
            text = Path(path).read_text()
        claims = json.loads(text)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 text
        raise UserError(f"cannot read the claims file {path or 'seqbench/claims/paper.json'}: {exc}") from None
    check_claims(claims, path or "seqbench/claims/paper.json")
    return claims


def check_claims(claims: Any, path: Path | str) -> None:
    """The shape the report reads: a mistake in a claims file is named here, not met as a crash later."""
    def fail(what: str) -> None:
        raise UserError(f"claims file {path}: {what} (see seqbench/claims/paper.json for the format)")

    if not isinstance(claims, dict) or not isinstance(claims.get("claims"), list):
        fail('expected an object with a "claims" list')
    for n, claim in enumerate(claims["claims"]):
        if not isinstance(claim, dict):
            fail(f"claim #{n} is not an object")
        where = f"claim {claim.get('id', f'#{n}')!r}"
        for key in ("id", "claim", "paper_value", "source", "measure", "supported", "contradicted", "presets"):
            if key not in claim:
                fail(f"{where} lacks {key!r}")
        measure = claim["measure"]
        if not isinstance(measure, dict) or measure.get("kind") not in KINDS:
            fail(f"{where}: measure.kind must be one of {', '.join(KINDS)}")
        needed = ("task", "model", "metric") if measure["kind"] == "value" else ("metric", "a", "b")
        for key in (*needed, *(("mode",) if claim["source"] == "bench" else ("task",))):
            if key not in measure:
                fail(f"{where}: measure lacks {key!r}")
        for side in ("a", "b"):
            if side in measure and not (isinstance(measure[side], dict) and "model" in measure[side]):
                fail(f"{where}: measure.{side} must be an object naming a model")
        for verdict in ("supported", "contradicted"):
            rule = claim[verdict]
            arity = 2 if isinstance(rule, list) and rule and rule[0] in ("within", "outside") else 1
            if (not isinstance(rule, list) or not rule or rule[0] not in RULES or len(rule) != 1 + arity
                    or not all(isinstance(v, int | float) for v in rule[1:])):
                fail(f"{where}: {verdict} must be [RULE, {'LOW, HIGH' if arity == 2 else 'VALUE'}] with RULE one "
                     f"of {', '.join(RULES)}, got {json.dumps(rule)}")
        if not isinstance(claim["presets"], dict) or not all(isinstance(b, dict) for b in claim["presets"].values()):
            fail(f"{where}: presets must map a preset name to an object")
        if claim["source"] != "bench" and not all("commands" in b for b in claim["presets"].values()) \
                and not isinstance(claim.get("sweep"), dict):
            fail(f"{where}: a claim measured on runs needs a sweep object (or commands in every preset)")


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
        return [f"{c} --results {results}" for c in block["commands"]]
    sweep = claim["sweep"]
    parts = ["seqbench sweep", f"--models {sweep['models']}", f"--tasks {sweep['tasks']}",
             f"--seeds {block.get('seeds', '0')}"]
    if sweep.get("variants"):
        parts.append(f"--variants {sweep['variants']}")
    parts += [f"--set {item}" for item in block.get("set", [])]
    parts += [f"--grid {item}" for item in block.get("grid", [])]
    parts += [f"--preset {preset}", f"--results {results}"]
    return [" ".join(parts)]


# ---------------------------------------------------------------------------- measurement


def _matches(row: dict[str, Any], flat: dict[str, str], sets: list[str]) -> bool:
    for item in sets:
        key, _, value = item.partition("=")
        have = flat.get(key.strip())
        if have is None:
            return False
        try:
            if not math.isclose(float(have), float(value)):
                return False
        except ValueError:
            if have != value.strip():
                return False
    return True


def select_runs(runs: list[dict], claim: dict, preset: str, side: dict[str, Any]) -> list[dict]:
    """Ok rows of one model (and variant) on the claim's task at ``preset``, one per seed (the newest)."""
    measure = claim["measure"]
    block = claim["presets"].get(preset, {})
    chosen = []
    for row in runs:
        if row["status"] != Status.OK or row["task"] != measure["task"] or row["preset"] != preset:
            continue
        if row["model"] != side["model"] or ("variant" in side and row["variant"] != side["variant"]):
            continue
        flat = {key: str(value) for key, value in config_settings(row).items()}
        if _matches(row, flat, block.get("set", [])):
            chosen.append((row, flat))
    if "at" in side and chosen:
        values = {float(flat.get(side["key"], "nan")) for _, flat in chosen}
        target = (min if side["at"] == "smallest" else max)(v for v in values if not math.isnan(v))
        chosen = [(r, flat) for r, flat in chosen if math.isclose(float(flat.get(side["key"], "nan")), target)]
    newest: dict[tuple, dict] = {}
    for row, _ in chosen:
        key = (row["variant"], row["seed"])
        if key not in newest or row["started_at"] > newest[key]["started_at"]:
            newest[key] = row
    return list(newest.values())


def _side_name(side: dict[str, Any]) -> str:
    name = side["model"] + (f"/{side['variant']}" if "variant" in side else "")
    return name + (f" at the {side['at']} {side['key']}" if "at" in side else "")


def measure_runs(claim: dict, runs: list[dict], preset: str, min_seeds: int) -> Measured:
    measure = claim["measure"]
    metric = measure["metric"]
    if measure["kind"] == "value":
        sides = [{k: v for k, v in measure.items() if k in ("model", "variant")}]
    else:
        sides = [measure["a"], measure["b"]]
    if claim.get("tune"):  # e.g. ["train.lr"]: each model at its best value on validation
        from seqbench.tuning import tune

        runs = tune(runs, claim["tune"]).rows
    picked = [select_runs(runs, claim, preset, side) for side in sides]
    for side, rows in zip(sides, picked, strict=True):
        if len({r["variant"] for r in rows}) > 1:
            return Measured("inconclusive", f"{_side_name(side)} has runs of several variants; name one in the claim",
                            "—")
    values = [[r[metric] for r in rows if r.get(metric) is not None] for rows in picked]
    if any(not v for v in values):
        missing = [_side_name(s) for s, v in zip(sides, values, strict=True) if not v]
        return Measured("not yet measured", f"no ok runs of {', '.join(missing)} with {metric}", "0")
    seeds = "/".join(str(len(v)) for v in values)
    if measure["kind"] == "value":
        stat = mean_interval(values[0])
        mean, half = stat.mean, stat.half_width
        interval = "95% t-interval"
    else:
        gap = difference_interval(*({r["seed"]: r[metric] for r in rows if r.get(metric) is not None}
                                    for rows in picked))
        mean, half = gap.mean, gap.half_width
        interval = INTERVAL_NAMES[gap.kind] + " of the difference"
    if min(len(v) for v in values) < min_seeds or half is None:
        return Measured("inconclusive", f"{mean:+.3f} ± n/a (fewer than {min_seeds} seeds: no interval)"
                        if measure["kind"] != "value" else f"{mean:.3f} ± n/a (fewer than {min_seeds} seeds)",
                        seeds, mean)
    sign = "+" if measure["kind"] != "value" else ""
    text = f"{mean:{sign}.3f} ± {half:.3f} ({interval})"
    return _decide(claim, text, seeds, mean, mean - half, mean + half)


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
    if rule_holds(claim["supported"], low, high):
        verdict = "supported"
    elif rule_holds(claim["contradicted"], low, high):
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Measured(verdict, text, seeds, mean)


def evaluate(claim: dict, runs: list[dict], bench: list[dict], preset: str, min_seeds: int,
             decisive: bool = True) -> Measured:
    """The claim's measurement at ``preset``; a non-decisive preset (smoke) never gives a verdict."""
    if claim["source"] == "bench":
        result = measure_bench(claim, bench, preset)
    else:
        result = measure_runs(claim, runs, preset, min_seeds)
    if not decisive and result.verdict in ("supported", "contradicted"):
        result.text += f" — would be {result.verdict}, but preset {preset} decides nothing"
        result.verdict = "inconclusive"
    return result


# -------------------------------------------------------------------------------- markdown


def build_report(claims: dict[str, Any], results: Path, preset: str = "default", on_unreadable=None) -> str:
    from seqbench.registry import PRESETS, check_preset

    check_preset(preset)
    runs, collapsed = read_cells(results, on_unreadable=on_unreadable)
    bench = list(iter_rows(read_bench(results, on_unreadable=on_unreadable)))
    min_seeds = int(claims.get("min_seeds", 2))
    decisive = claims.get("decisive_presets", list(PRESETS))
    lines = [
        f"# Reproduction report: {claims.get('title', 'claims')}",
        "",
        f"Results: `{results}` ({len(runs)} run rows, one per config and seed, {collapsed} duplicates collapsed; "
        f"{len(bench)} bench rows), preset **{preset}**, "
        f"generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        claims.get("note", ""),
        "",
        "Intervals: one model's metric is mean ± the 95% Student-t interval over seeds; a difference between "
        "two models is mean ± the paired 95% t-interval over the seeds both share (Welch's where they share "
        "fewer than two); throughput ratios are of median step times (no interval).",
        "",
        "| claim | paper | measured | seeds | verdict | rule | command |",
        "|---|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for claim in claims.get("claims", []):
        result = evaluate(claim, runs, bench, preset, min_seeds, decisive=preset in decisive)
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
        rule = f"supported if {rule_text(claim['supported'])}; contradicted if {rule_text(claim['contradicted'])}"
        block = claim["presets"].get(preset, {})
        setting = ", ".join([*block.get("set", []), *block.get("grid", [])])
        command = "<br>".join(f"`{c}`" for c in commands(claim, preset, results)) or "(no command for this preset)"
        lines.append(f"| **{claim['id']}**: {claim['claim']}{f' ({setting})' if setting else ''} | "
                     f"{claim['paper_value']} | {result.text} | {result.seeds} | **{result.verdict}** | {rule} | "
                     f"{command} |")
    lines += ["", "Verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())), ""]
    return "\n".join(lines)
