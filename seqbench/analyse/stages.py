"""A claim's two stages: the tuning grid, then the verdict's seeds at the value chosen there.

A claim that tunes at some seeds (``tune_seed``: one seed or a list) runs its preset block's grid at those
seeds only, chooses on validation (seqbench.analyse.tuning) and runs the chosen value at the other seeds.

The tuning stage may stop on a plateau where the verdict's runs do not (``tune_set`` in the preset
block, e.g. ``["train.patience=32"]`` beside ``train.patience=none`` in its ``set``): the stop bounds
the cost of the grid's rates that never learn, while the verdict's runs keep the published protocol
(zoology runs every learning rate to its 0.99 target or 64 epochs). Only plateau stopping may differ
(``STAGE_KEYS``): it changes where a run ends, never how it trains, so a tuning run that ended otherwise
(at its target, or its step budget) would have ended the same way without it and counts for its seed; a
tuning run at the chosen value that stopped on the plateau is run again at that seed without the stop.
"""

from __future__ import annotations

import math
from typing import Any

from seqbench.results import config_settings

# the settings a tuning stage may set apart from the verdict's runs: where a plateau ends a run
STAGE_KEYS = ("train.patience", "train.min_delta")
# a row's stop_reason (seqbench.train.stopping) when the plateau rule did not end it; null in old rows,
# which so count as possibly ended by it
NOT_BY_PLATEAU = ("target", "budget", "diverged")


def tune_seeds(claim: dict[str, Any]) -> set[int] | None:
    """The seeds a claim's tuned values are chosen on (``tune_seed``: one seed, or a list), None for all."""
    if "tune_seed" not in claim:
        return None
    chosen = claim["tune_seed"]
    return {int(s) for s in chosen} if isinstance(chosen, list) else {int(chosen)}


def staged_seeds(claim: dict[str, Any], block: dict[str, Any]) -> tuple[str, str] | None:
    """``(the tuning seeds, the other seeds)``, comma-separated, when the claim chooses its tuned values
    at some seeds (``tune_seed``) and its block sweeps a grid of them; None when every seed runs the
    whole grid."""
    tuning = tune_seeds(claim)
    if tuning is None or not any(item.partition("=")[0] in claim.get("tune", []) for item in block.get("grid", [])):
        return None
    others = [s for s in str(block.get("seeds", "0")).split(",") if int(s) not in tuning]
    return (",".join(str(s) for s in sorted(tuning)), ",".join(others)) if others else None


def tuning_only(block: dict[str, Any]) -> list[str]:
    """The block's ``tune_set``: settings of the tuning stage's runs only."""
    return list(block.get("tune_set", []))


def stage_keys(block: dict[str, Any]) -> tuple[str, ...]:
    """The settings the two stages differ in: left out when runs of both are grouped for the choice."""
    return tuple(item.partition("=")[0].strip() for item in tuning_only(block))


def tune_set_problem(claim: dict[str, Any], block: dict[str, Any]) -> str | None:
    """What is wrong with a block's ``tune_set``, or None (it may be absent)."""
    items = block.get("tune_set")
    if items is None:
        return None
    if not isinstance(items, list) or not all(isinstance(i, str) and "=" in i for i in items):
        return "tune_set must be a list of KEY=VALUE settings"
    if staged_seeds(claim, block) is None:
        return "tune_set needs a tuning stage: tune_seed with a grid over the tuned keys and other seeds"
    final = {item.partition("=")[0].strip(): item.partition("=")[2].strip() for item in block.get("set", [])}
    for item in items:
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in STAGE_KEYS:
            return (f"tune_set may only set {', '.join(STAGE_KEYS)} (where a plateau ends a run, never how it "
                    f"trains), got {key}")
        if key not in final or final[key].lower() == value.lower():
            return f"tune_set's {key} must differ from a {key} in set, so each row belongs to one stage"
    return None


def setting_matches(have: str | None, value: str) -> bool:
    """Whether a row's setting (as text; None where the row lacks it) is a claim item's ``value``: a
    number within float tolerance, ``none`` also matching rows from before the key (e.g.
    train.stop_at=none), booleans as --set writes them (false) and as a row's settings read (False)."""
    value = value.strip()
    if value.lower() in ("none", "null"):
        return have in (None, "None")
    if have is None:
        return False
    try:
        return math.isclose(float(have), float(value))
    except ValueError:
        return have == value or (have in ("True", "False") and have.lower() == value.lower())


def is_tuning_run(row: dict[str, Any], claim: dict[str, Any], block: dict[str, Any]) -> bool:
    """Whether a row is of the claim's tuning stage: at a tuning seed, with the block's ``tune_set``."""
    items = tuning_only(block)
    if not items or row.get("seed") not in (tune_seeds(claim) or set()):
        return False
    flat = {key: str(value) for key, value in config_settings(row).items()}  # as select_runs reads them
    return all(setting_matches(flat.get(key.strip()), value) for key, _, value in (i.partition("=") for i in items))


def _cell(row: dict[str, Any], ignore: tuple[str, ...]) -> tuple:
    settings = config_settings(row)
    return (row["model"], row["variant"], row["seed"],
            tuple(sorted((k, str(v)) for k, v in settings.items() if k not in ignore)))


def verdict_rows(rows: list[dict[str, Any]], claim: dict[str, Any], block: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per seed for a verdict, of the chosen value's rows: the verdict stage's run, or at a tuning
    seed without one the tuning run when the plateau stop did not end it. A tuning run that stopped on the
    plateau stands for no seed: its seed is run again without the stop (:func:`rerun_seeds`)."""
    if not tuning_only(block):
        return rows
    ignore = stage_keys(block)
    final = {_cell(r, ignore) for r in rows if not is_tuning_run(r, claim, block)}
    return [r for r in rows if not is_tuning_run(r, claim, block)
            or (_cell(r, ignore) not in final and r.get("stop_reason") in NOT_BY_PLATEAU)]


def rerun_seeds(chosen: list[dict[str, Any]], claim: dict[str, Any], block: dict[str, Any]) -> list[int]:
    """The tuning seeds whose run at the chosen value the tuning stage's plateau rule ended: the verdict
    stage runs them again without it."""
    return sorted({r["seed"] for r in chosen
                   if is_tuning_run(r, claim, block) and r.get("stop_reason") not in NOT_BY_PLATEAU})
