"""A claim's tuning stage of its own (``tune_set``, seqbench.analyse.stages): the learning-rate grid stops
on a plateau to bound the cost of rates that never learn, while the verdict's seeds run as the published
protocol does (zoology: to the 0.99 target or 64 epochs); one row per seed reaches the verdict."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from seqbench.analyse.report import check_claims, chosen_seed_commands, commands, measure_runs, select_runs
from seqbench.errors import UserError
from seqbench.results import read_cells, write_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CLAIM = {
    "id": "attention-solves", "claim": "attention solves it", "cite": {"where": "x", "quote": "y"},
    "paper_value": "1.0", "measure": {"kind": "value", "task": "mqar", "model": "transformer", "metric": "accuracy"},
    "supported": ["at_least", 0.97], "contradicted": ["below", 0.9],
    "sweep": {"models": "transformer", "tasks": "mqar"}, "tune": ["train.lr"], "tune_seed": 0,
    "presets": {"default": {"seeds": "0,1,2", "set": ["train.stop_at=0.99", "train.patience=none"],
                            "tune_set": ["train.patience=32"], "grid": ["train.lr=1e-3,3e-3"]}},
}


def _row(results, seed, lr, acc, *, patience, stop, tag=""):
    train = {"lr": lr, "stop_at": 0.99, "patience": patience}
    write_run(results, {"run_id": f"t-{seed}-{lr}-{patience}{tag}", "model": "transformer", "variant": "default",
                        "task": "mqar", "task_version": 1, "preset": "default", "seed": seed, "status": "ok",
                        "accuracy": acc, "val_accuracy": acc, "val_loss": 1 - acc, "stop_reason": stop,
                        "config_json": json.dumps({"task_config": {}, "model_config": {}, "train": train}),
                        "started_at": NOW}, [])


def _grid_at_seed_0(results, chosen_stop="target"):
    _row(results, 0, 1e-3, 0.99 if chosen_stop == "target" else 0.93, patience=32, stop=chosen_stop)
    _row(results, 0, 3e-3, 0.5, patience=32, stop="plateau")


def _seeds(results) -> list[tuple[int, float]]:
    runs = read_cells(results)[0]
    return sorted((r["seed"], r["accuracy"]) for r in measure_runs(CLAIM, runs, "default", 2).picked[0])


def test_the_grid_runs_with_the_plateau_stop_and_the_other_seeds_without_it(tmp_path):
    first, then = commands(CLAIM, "default", tmp_path)
    assert "--seeds 0 " in first and "--set train.patience=none --set train.patience=32" in first  # later wins
    assert "without train.patience=32" in then
    _grid_at_seed_0(tmp_path)
    (argv,) = chosen_seed_commands({"claims": [CLAIM]}, "default", tmp_path)
    assert argv[argv.index("--seeds") + 1] == "1,2"  # seed 0's chosen run reached its target: it counts
    assert "train.patience=none" in argv and "train.patience=32" not in argv and "train.lr=0.001" in argv


def test_the_verdict_reads_one_row_per_seed_and_never_a_plateau_stopped_one(tmp_path):
    _grid_at_seed_0(tmp_path)
    _row(tmp_path, 1, 1e-3, 0.40, patience=32, stop="plateau")  # an earlier protocol's seed-1 run: not this claim's
    _row(tmp_path, 1, 1e-3, 0.98, patience=None, stop="target")
    _row(tmp_path, 2, 1e-3, 0.97, patience=None, stop="budget")
    assert _seeds(tmp_path) == [(0, 0.99), (1, 0.98), (2, 0.97)]
    runs = read_cells(tmp_path)[0]
    assert measure_runs(CLAIM, runs, "default", 2).mean == pytest.approx(0.98)  # the 0.40 run would pull it to 0.79
    # a tuning-stage run at a seed the grid does not run is no row of this claim
    assert not [r for r in select_runs(runs, CLAIM, "default", {"model": "transformer"}) if r["accuracy"] == 0.40]


def test_a_chosen_tuning_run_the_plateau_stopped_is_run_again_without_it(tmp_path):
    _grid_at_seed_0(tmp_path, chosen_stop="plateau")
    (argv,) = chosen_seed_commands({"claims": [CLAIM]}, "default", tmp_path)
    assert argv[argv.index("--seeds") + 1] == "0,1,2"
    _row(tmp_path, 1, 1e-3, 0.98, patience=None, stop="target")
    assert _seeds(tmp_path) == [(1, 0.98)]  # seed 0's plateau-stopped run stands for no seed
    _row(tmp_path, 0, 1e-3, 0.99, patience=None, stop="target")
    assert _seeds(tmp_path) == [(0, 0.99), (1, 0.98)]  # its rerun does, once


@pytest.mark.parametrize("change, message", [
    ({"tune_set": ["train.lr=1e-2"]}, "tune_set may only set train.patience, train.min_delta"),
    ({"tune_set": ["train.min_delta=0.01"]}, "tune_set's train.min_delta must differ from a train.min_delta in set"),
    ({"tune_set": ["train.patience=none"]}, "tune_set's train.patience must differ"),
    ({"tune_set": "train.patience=32"}, "tune_set must be a list of KEY=VALUE settings"),
    ({"grid": []}, "tune_set needs a tuning stage"),
])
def test_a_tune_set_that_would_change_training_or_blur_the_stages_is_named(change, message):
    claim = copy.deepcopy(CLAIM)
    claim["presets"]["default"].update(change)
    with pytest.raises(UserError, match=message):
        check_claims({"paper": {}, "claims": [claim]}, "claims.json")
    check_claims({"paper": {}, "claims": [CLAIM]}, "claims.json")


def test_the_second_stage_names_only_the_variants_its_model_ran(tmp_path):
    """A sweep of several models may name a variant only some of them have (MQAR: `--models mamba,tgn
    --variants parallel`); the second stage runs one model, so it must name that model's own variants,
    or the sweep refuses it ("no selected model has variant(s) parallel")."""
    claim = copy.deepcopy(CLAIM)
    claim["sweep"] = {"models": "transformer", "tasks": "mqar", "variants": "parallel"}
    _grid_at_seed_0(tmp_path)
    (argv,) = chosen_seed_commands({"claims": [claim]}, "default", tmp_path)
    assert argv[argv.index("--variants") + 1] == "default"
    assert "parallel" not in argv
