"""seqbench report: claims as data, interval maths, verdict rules, commands, the markdown rows."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from scipy import stats

from seqbench.report import commands, evaluate, load_claims, rule_holds
from seqbench.results import read_runs, write_bench_row, write_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _run(results, model, seed, *, task="assoc_recall", variant="default", preset="smoke", status="ok", **metrics):
    run_id = f"{task}-{model}-{variant}-{seed}-{json.dumps(metrics, sort_keys=True).__hash__() & 0xFFFFFF:x}"
    settings = metrics.pop("task_config", {"seq_len": 64})
    config = {"task_config": settings, "model_config": {}, "train": {}}
    write_run(results, {"run_id": run_id, "model": model, "variant": variant, "task": task, "task_version": 1,
                        "preset": preset, "seed": seed, "status": status, "config_json": json.dumps(config),
                        "started_at": NOW, **metrics}, [])


def _claim(claims, claim_id):
    return next(c for c in claims["claims"] if c["id"] == claim_id)


def test_paper_claims_cover_the_design_list():
    claims = load_claims()
    ids = {c["id"] for c in claims["claims"]}
    assert {"ar-tgn-accuracy", "ar-tgn-gate-rate", "ar-rnn-chance", "ring-gcn-degrades", "mqar-tgn-vs-mamba",
            "listops-tgn-accuracy", "listops-tgn-vs-mamba", "chunked-tgn-throughput", "wikitext-gate-rate"} <= ids
    for claim in claims["claims"]:
        assert set(claim["presets"]) == {"smoke", "default", "paper"}
        for preset in ("smoke", "default", "paper"):
            assert all(c.startswith("seqbench ") for c in commands(claim, preset, "results"))


def test_difference_is_paired_over_shared_seeds_and_tuned_on_validation(tmp_path):
    claim = _claim(load_claims(), "ar-tgn-vs-rnn")
    tgn, gru = [0.9, 0.8, 0.95], [0.5, 0.45, 0.6]
    for seed in range(3):
        _run(tmp_path, "tgn", seed, variant="parallel", accuracy=tgn[seed])
        _run(tmp_path, "gru", seed, accuracy=gru[seed], val_accuracy=0.5, task_config={"seq_len": 64, "lr": 1})
        # a better test score at another setting, worse on validation: tuning must not pick it
        _run(tmp_path, "gru", seed, accuracy=0.99, val_accuracy=0.1, task_config={"seq_len": 64, "lr": 2})
    runs = read_runs(tmp_path).to_pylist()
    result = evaluate({**claim, "tune": ["task.lr"]}, runs, [], "smoke", 2)
    ci = stats.ttest_rel(tgn, gru).confidence_interval(0.95)
    assert "paired" in result.text and result.mean == pytest.approx(sum(tgn) / 3 - sum(gru) / 3)
    assert f"± {(ci.high - ci.low) / 2:.3f}" in result.text


@pytest.mark.parametrize("rule,low,high,holds", [
    (["at_least", 0.9], 0.9, 1.0, True), (["at_least", 0.9], 0.89, 1.0, False),
    (["below", 0.8], 0.1, 0.79, True), (["below", 0.8], 0.1, 0.8, False),
    (["within", 0.03, 0.08], 0.04, 0.07, True), (["within", 0.03, 0.08], 0.02, 0.07, False),
    (["outside", 0.02, 0.1], 0.11, 0.2, True), (["outside", 0.02, 0.1], 0.09, 0.2, False),
])
def test_rules_apply_to_the_whole_interval(rule, low, high, holds):
    assert rule_holds(rule, low, high) is holds


def test_verdicts_from_results(tmp_path):
    claims = load_claims()
    claim = _claim(claims, "ar-tgn-accuracy")

    def runs():
        table = read_runs(tmp_path)
        return [] if table is None else table.to_pylist()

    assert evaluate(claim, [], [], "smoke", 2).verdict == "not yet measured"
    _run(tmp_path, "tgn", 0, variant="parallel", accuracy=0.99)
    single = evaluate(claim, runs(), [], "smoke", 2)
    assert single.verdict == "inconclusive" and "fewer than 2 seeds" in single.text
    _run(tmp_path, "tgn", 1, variant="parallel", accuracy=0.98)
    _run(tmp_path, "tgn", 2, variant="parallel", accuracy=0.985)
    _run(tmp_path, "tgn", 3, variant="parallel", status="failed")
    result = evaluate(claim, runs(), [], "smoke", 2)
    assert result.verdict == "supported" and result.seeds == "3" and "±" in result.text
    assert result.mean == pytest.approx(0.985)
    assert evaluate(claim, runs(), [], "default", 2).verdict == "not yet measured"  # other preset

    rnn = _claim(claims, "ar-rnn-chance")
    for seed, acc in enumerate([0.7, 0.72, 0.71]):
        _run(tmp_path, "gru", seed, accuracy=acc)
    assert evaluate(rnn, runs(), [], "smoke", 2).verdict == "contradicted"
    versus = evaluate(_claim(claims, "ar-tgn-vs-rnn"), runs(), [], "smoke", 2)
    assert versus.verdict == "supported" and versus.text.startswith("+0.2")

    gate = _claim(claims, "ar-tgn-gate-rate")  # rows with a wide spread straddle the rule: inconclusive
    for seed, rate in enumerate([0.01, 0.09]):
        _run(tmp_path, "tgn", 10 + seed, variant="parallel", task="assoc_recall", gate_rate=rate, accuracy=0.99)
    assert evaluate(gate, runs(), [], "smoke", 2).verdict == "inconclusive"


def test_ring_claim_takes_the_smallest_and_largest_ring(tmp_path):
    for nodes, acc in ((8, [0.9, 0.92]), (16, [0.5, 0.55])):
        for seed, value in enumerate(acc):
            _run(tmp_path, "gcn", seed, task="ring_distance", accuracy=value, task_config={"num_nodes": nodes})
    runs = read_runs(tmp_path).to_pylist()
    result = evaluate(_claim(load_claims(), "ring-gcn-degrades"), runs, [], "smoke", 2)
    assert result.mean == pytest.approx(0.385) and result.verdict == "supported"


def test_throughput_ratio_from_bench_rows(tmp_path):
    claim = _claim(load_claims(), "chunked-tgn-throughput")
    base = {"preset": "default", "mode": "infer", "seq_len": 8192, "batch_size": 1, "device": "cpu",
            "started_at": NOW}
    write_bench_row(tmp_path, {**base, "bench_id": "t", "model": "transformer", "variant": "default",
                               "status": "ok", "tokens_per_sec": 1000.0})
    write_bench_row(tmp_path, {**base, "bench_id": "g", "model": "tgn", "variant": "chunked", "status": "ok",
                               "tokens_per_sec": 6500.0, "forced_gate_rate": 0.15})
    from seqbench.results import read_bench

    bench = read_bench(tmp_path).to_pylist()
    result = evaluate(claim, [], bench, "default", 2)
    assert result.verdict == "supported" and result.mean == pytest.approx(6.5) and "6.50x" in result.text
    assert evaluate(claim, [], bench, "paper", 2).verdict == "not yet measured"  # needs L=32768


def test_report_cli_writes_one_row_per_claim(cli, tmp_path):
    _run(tmp_path, "gru", 0, accuracy=0.05)
    _run(tmp_path, "gru", 1, accuracy=0.052)
    out_file = tmp_path / "report.md"
    code, _, _ = cli("report", "--results", tmp_path, "--preset", "smoke", "--out", out_file)
    text = out_file.read_text()
    table = [line for line in text.splitlines() if line.startswith("| **")]
    assert code == 0 and len(table) == len(load_claims()["claims"])
    chance = next(line for line in table if "ar-rnn-chance" in line)
    assert "**inconclusive**" in chance and "would be supported, but preset smoke decides nothing" in chance
    assert "0.051 ± " in chance
    assert "seqbench sweep --models gru,transformer,tgn" in chance
    assert "95% Student-t interval" in text
    code, _, err = cli("report", "--results", tmp_path, "--preset", "huge")
    assert code == 2 and "preset" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"claims": [{"id": "x"}]}))
    code, _, err = cli("report", "--results", tmp_path, "--claims", bad)
    assert code == 2 and "lacks" in err
