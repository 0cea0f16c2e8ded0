"""Calibration against published cells (seqbench/analyse/claims/calibration.json): the claims file, the
measured-only rows beside a published number, and tuning at one seed then running the choice at the others."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json

from seqbench.analyse.report import (
    build_report,
    chosen_seed_commands,
    claim_commands,
    commands,
    evaluate,
    load_claims,
    select_runs,
)
from seqbench.analyse.tuning import tune
from seqbench.cli import main
from seqbench.results import read_cells, write_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def calibration() -> dict:
    path = importlib.resources.files("seqbench.analyse").joinpath("claims/calibration.json")
    return load_claims(path)


def _claim(claims: dict, claim_id: str) -> dict:
    return next(c for c in claims["claims"] if c["id"] == claim_id)


def _row(results, model, seed, lr, val, acc, *, task="mqar", preset="smoke", sets=None):
    config = {"task_config": {}, "model_config": {}, "train": {"lr": lr, "stop_at": 0.99, **(sets or {})}}
    write_run(results, {"run_id": f"{model}-{seed}-{lr}", "model": model, "variant": "default", "task": task,
                        "task_version": 1, "preset": preset, "seed": seed, "status": "ok", "accuracy": acc,
                        "val_accuracy": val, "val_loss": 1 - val, "stop_reason": "target",
                        "config_json": json.dumps(config), "started_at": NOW}, [])


def test_the_calibration_cells_name_their_source_and_their_published_settings():
    claims = calibration()
    safari, zoology = _claim(claims, "safari-ar-transformer"), _claim(claims, "zoology-mqar-attention")
    assert "HazyResearch/safari" in safari["cite"]["where"] and ">97" in safari["cite"]["quote"]
    assert "iclr24_zoology_figure2/configs.py" in zoology["cite"]["where"]
    assert safari["supported"] == ["at_least", 0.97] and zoology["supported"] == ["at_least", 0.97]
    sets = zoology["presets"]["default"]["set"]
    for item in ("task.vocab_size=8192", "task.num_train=100000", "task.num_test=3000", "task.random_non_queries=false",
                 "transformer:model.mlp_ratio=0", "train.batch_size=512", "train.stop_at=0.99"):
        assert item in sets
    assert zoology["presets"]["default"]["grid"] == ["train.lr=1e-4,4.64e-4,2.15e-3,1e-2"]  # logspace(-4, -2, 4)
    assert "task.num_train=5000" in safari["presets"]["default"]["set"]
    # the other models on the safari cell are measured beside it, held to no number
    others = [c for c in claims["claims"] if c["id"].startswith("safari-") and c["id"] != "safari-ar-transformer"]
    assert {c["measure"]["model"] for c in others} == {"gru", "mamba", "tgn"}
    assert all(c["measure_only"] and "supported" not in c for c in others)


def test_a_measured_only_claim_reads_measured_with_no_rule(tmp_path):
    claim = _claim(calibration(), "safari-ar-gru")
    for seed, acc in ((0, 0.4), (1, 0.5)):
        _row(tmp_path, "gru", seed, 5e-4, 0.5, acc, task="assoc_recall", preset="default",
             sets=dict(item.partition("=")[::2] for item in claim["presets"]["default"]["set"]
                       if item.startswith("train.") and item != "train.stop_at=0.99"))
    runs = read_cells(tmp_path)[0]
    bare = {**claim, "presets": {"default": {"seeds": "0,1", "set": [], "grid": []}}}
    result = evaluate(bare, runs, [], "default", 2)
    assert result.verdict == "measured" and result.mean == 0.45


def test_tuning_at_one_seed_chooses_on_it_and_keeps_the_choice_at_every_seed():
    rows = []
    for lr, val0 in ((1e-3, 0.8), (3e-3, 0.7)):
        rows.append({"seed": 0, "status": "ok", "val_accuracy": val0, "val_loss": 0.1, "task": "mqar",
                     "preset": "smoke", "model": "transformer", "variant": "default",
                     "config_json": json.dumps({"train": {"lr": lr}})})
    # seed 1 ran only at 3e-3, and scored high there: choosing over every seed would move the choice
    rows.append({"seed": 1, "status": "ok", "val_accuracy": 1.0, "val_loss": 0.0, "task": "mqar", "preset": "smoke",
                 "model": "transformer", "variant": "default", "config_json": json.dumps({"train": {"lr": 3e-3}})})
    assert tune(rows, ["train.lr"], on_seeds={0}).choices[0].values == {"train.lr": 1e-3}
    assert tune(rows, ["train.lr"]).choices[0].values == {"train.lr": 3e-3}


def test_a_claim_tuned_at_one_seed_sweeps_the_grid_there_then_the_choice_at_the_others(tmp_path):
    claims = calibration()
    zoology = _claim(claims, "zoology-mqar-attention")
    first, then = commands(zoology, "default", tmp_path)
    assert "--seeds 0 " in first and "--grid train.lr=1e-4,4.64e-4,2.15e-3,1e-2" in first
    assert then.startswith("then, per model, at seed(s) 1") and not then.startswith("seqbench")
    assert all(argv[argv.index("--seeds") + 1] == "0" for argv in claim_commands({"claims": [zoology]}, "default",
                                                                                 tmp_path))
    sets = {k: v for k, _, v in (item.partition("=") for item in zoology["presets"]["smoke"]["set"])}
    for lr, val in ((1e-3, 0.4), (3e-3, 0.8)):
        _row(tmp_path, "transformer", 0, lr, val, val, sets={k.split(".")[1]: float(v) for k, v in sets.items()})
    (argv,) = chosen_seed_commands({"claims": [zoology]}, "smoke", tmp_path)
    assert argv[:6] == ["sweep", "--models", "transformer", "--tasks", "mqar", "--seeds"] and argv[6] == "1"
    assert "train.lr=0.003" in argv and "--grid" not in argv


def test_the_second_stage_waits_for_the_whole_grid_at_the_tuning_seed(tmp_path):
    """A grid cell still running elsewhere (or interrupted) must not let part of the grid choose the rate."""
    zoology = _claim(calibration(), "zoology-mqar-attention")
    _row(tmp_path, "transformer", 0, 1e-3, 0.4, 0.4)
    assert chosen_seed_commands({"claims": [zoology]}, "smoke", tmp_path) == []  # 3e-3 has not run yet
    write_run(tmp_path, {"run_id": "transformer-0-0.003", "model": "transformer", "variant": "default", "task": "mqar",
                         "task_version": 1, "preset": "smoke", "seed": 0, "status": "diverged",
                         "config_json": json.dumps({"task_config": {}, "model_config": {},
                                                    "train": {"lr": 3e-3, "stop_at": 0.99}}), "started_at": NOW}, [])
    (argv,) = chosen_seed_commands({"claims": [zoology]}, "smoke", tmp_path)  # a diverged cell is finished
    assert "train.lr=0.001" in argv


def test_report_runs_the_staged_cell_end_to_end_at_smoke(tmp_path, monkeypatch):
    """``report --run``: the grid at seed 0, then seed 1 at the rate chosen there, rendered as a calibration."""
    claims = calibration()
    only = {**claims, "claims": [_claim(claims, "zoology-mqar-attention")]}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(only))
    results, out = tmp_path / "results", tmp_path / "calibration.md"
    assert main(["report", "--claims", str(path), "--results", str(results), "--preset", "smoke", "--run",
                 "--out", str(out)]) == 0
    rows = read_cells(results)[0]
    lrs = {(r["seed"], json.loads(r["config_json"])["train"]["lr"]) for r in rows}
    assert {lr for seed, lr in lrs if seed == 0} == {1e-3, 3e-3}
    assert len([lr for seed, lr in lrs if seed == 1]) == 1  # the chosen rate only
    text = out.read_text()
    assert text.startswith("# Calibration: ") and "zoology-mqar-attention" in text
    assert build_report(only, results, preset="smoke").count("zoology-mqar-attention") >= 1


def test_a_claim_matches_a_boolean_setting_however_it_is_spelled(tmp_path):
    """``--set task.random_non_queries=false`` (the claim) names rows whose settings read ``False``."""
    claim = {"measure": {"task": "mqar"}, "presets": {"default": {"set": ["task.random_non_queries=false"]}}}
    rows = []
    for flag in (False, True):
        rows.append({"status": "ok", "task": "mqar", "preset": "default", "model": "transformer", "variant": "default",
                     "config_json": json.dumps({"task_config": {"random_non_queries": flag}})})
    (picked,) = select_runs(rows, claim, "default", {"model": "transformer"})
    assert json.loads(picked["config_json"])["task_config"]["random_non_queries"] is False


def test_the_committed_calibration_regenerates_from_the_committed_evidence(monkeypatch, tmp_path):
    """docs/calibration.md is what evidence/calibration's rows give: rendered by seqbench report, never by hand."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    published = (root / "docs" / "calibration.md").read_text()
    monkeypatch.chdir(root)  # the document names the folder as its command gave it
    text = build_report(calibration(), Path("evidence/calibration"), preset="default", out=tmp_path / "calibration.md")

    def claims_onwards(document: str) -> str:
        return document[document.index("## Claims"):]

    assert claims_onwards(text) == claims_onwards(published)
    assert published.startswith("# Calibration: ")
