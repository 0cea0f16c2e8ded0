"""Claims at a matched parameter budget: a preset block's ``params`` reaches the sweep as --params and
selects only rows whose width was solved for it (their ``param_budget``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from claim_fixtures import bare_claims

from seqbench.analyse.report import check_claims, commands, load_claims, select_runs
from seqbench.errors import UserError

CLAIM = bare_claims()["mqar-tgn-vs-mamba"]  # settings left out: the rows below carry none


def _with_budget(budget):
    claim = copy.deepcopy(CLAIM)
    claim["presets"]["cpu"]["params"] = budget
    return claim


def _row(model, budget, seed=0):
    return {"run_id": f"{model}-{budget}-{seed}", "model": model, "variant": "default", "task": "mqar",
            "preset": "cpu", "seed": seed, "status": "ok", "param_budget": budget,
            "config_json": json.dumps({"task_config": {}, "model_config": {}, "train": {}})}


def test_a_budget_reaches_the_sweep_command_and_selects_its_rows():
    claim = _with_budget("100k")
    (command,) = [c for c in commands(claim, "cpu", Path("evidence/x")) if c.startswith("seqbench sweep")][:1]
    assert "--params 100k" in command
    rows = [_row("mamba", 100_000), _row("mamba", None, seed=1), _row("mamba", 50_000, seed=2)]
    assert [r["seed"] for r in select_runs(rows, claim, "cpu", {"model": "mamba"})] == [0]
    # a claim without a budget reads only rows whose width no budget solved
    assert [r["seed"] for r in select_runs(rows, CLAIM, "cpu", {"model": "mamba"})] == [1]


def test_a_bad_budget_in_a_claims_file_is_named():
    claims = copy.deepcopy(load_claims())
    claims["claims"] = [_with_budget("lots")]
    with pytest.raises(UserError, match="presets.cpu.params must be a parameter count such as 100k"):
        check_claims(claims, "claims.json")


def test_tuning_at_two_seeds_runs_the_grid_there_and_the_choice_at_the_rest():
    claim = copy.deepcopy(CLAIM)
    claim["tune_seed"] = [0, 1]
    claim["presets"]["cpu"]["seeds"] = "0,1,2,3,4"
    first, then = commands(claim, "cpu", Path("evidence/x"))
    assert "--seeds 0,1 " in first and "--grid train.lr=" in first
    assert then.startswith("then, per model, at seed(s) 2,3,4:") and "at seeds 0,1)" in then
    claims = copy.deepcopy(load_claims())
    claims["claims"] = [{**claim, "tune_seed": "zero"}]
    with pytest.raises(UserError, match="tune_seed must be a seed or a list of seeds"):
        check_claims(claims, "claims.json")
