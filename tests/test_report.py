"""seqbench report: claims as data, interval maths, verdict rules, commands, the markdown rows."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from claim_fixtures import PAPER_TGN
from scipy import stats

from seqbench.analyse.report import CENSORED, commands, curve_statistic, evaluate, load_claims, rule_holds
from seqbench.errors import UserError
from seqbench.results import read_curves, read_runs, write_bench_row, write_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


PAPER_LAMBDA = PAPER_TGN  # the paper's lambda schedule, at the default initial gate


def _run(results, model, seed, *, task="assoc_recall", variant="default", preset="smoke", status="ok", curve=(),
         model_config=None, train=None, **metrics):
    """One row (and its curve); a TGN row gets the paper's lambda schedule unless model_config says otherwise."""
    digest = json.dumps([metrics, model_config, train], sort_keys=True).__hash__() & 0xFFFFFF
    run_id = f"{task}-{model}-{variant}-{seed}-{digest:x}"
    settings = metrics.pop("task_config", {"seq_len": 64})
    metrics.setdefault("stop_reason", "plateau")  # finished learning, unless a test says how else it ended
    if model_config is None:
        model_config = PAPER_LAMBDA if model == "tgn" else {}
    config = {"task_config": settings, "model_config": model_config, "train": train or {"max_steps": 100}}
    write_run(results, {"run_id": run_id, "model": model, "variant": variant, "task": task, "task_version": 1,
                        "preset": preset, "seed": seed, "status": status, "config_json": json.dumps(config),
                        "started_at": NOW, **metrics}, [{"step": float(s), **p} for s, p in curve])


def _claim(claims, claim_id):
    return next(c for c in claims["claims"] if c["id"] == claim_id)


def test_paper_claims_are_faithful_to_the_paper():
    claims = load_claims()
    paper = claims["paper"]
    assert paper["title"] == "Thermodynamic Gated Networks (TGN): Attention as a Geometric Anti-Dissipative Force"
    assert paper["date"] == "2026-01-21" and "Peking University" in paper["affiliation"]
    by_id = {c["id"]: c for c in claims["claims"]}
    assert {"ar-tgn-accuracy", "ar-tgn-gate-rate", "ar-rnn-chance", "ar-transformer-early", "ar-tgn-incubation",
            "ar-tgn-rise", "ar-tgn-sparsification", "ring-gcn-degrades", "mqar-tgn-vs-mamba", "listops-tgn-accuracy",
            "listops-tgn-vs-mamba", "chunked-tgn-vs-transformer-throughput", "mamba-vs-chunked-tgn-throughput",
            "fig24-32k-a800", "proto-gate-15pct", "wt103-125m-gate-rate", "wt103-125m-perplexity",
            "wt103-early-loss", "wt103-early-gate-rate"} <= set(by_id)
    for claim in claims["claims"]:
        assert claim["cite"]["where"].startswith("§") and claim["cite"]["quote"]
        assert set(claim["presets"]) == {"smoke", "default", "cpu", "paper"}
        for preset in claim["presets"]:
            listed = commands(claim, preset, "results")
            # a claim tuned at some seeds (tune_seed) ends with its second stage, said in words
            staged = [c for c in listed if c.startswith("then, per model, at seed(s) ")]
            assert all(c.startswith("seqbench ") for c in listed if c not in staged) and len(staged) <= 1
            assert not staged or (listed[-1] == staged[0] and "tune_seed" in claim)
        measure = claim["measure"]
        if measure["kind"] == "needs":
            assert measure["what"] and "supported" not in claim
        if measure.get("task") == "assoc_recall":  # Fig. 19: serial coupling, adaptive lambda_max = 0.02
            assert claim["sweep"]["variants"] == "serial"
            for side in (measure, measure.get("a", {}), measure.get("b", {})):
                if side.get("model") == "tgn":
                    assert side["variant"] == "serial"
                    assert side["require"][:2] == ["model.lambda_mode=adaptive", "model.lambda_max=0.02"]
                    # and each claim names the initial gate its rows start at (issue 21: a stated option)
                    assert [r for r in side["require"] if r.startswith("model.gate_bias=")], claim["id"]
        if claim.get("tune"):  # learning rates chosen on validation at the cpu scale: at least three
            lrs = [g for g in claim["presets"]["cpu"]["grid"] if g.startswith("train.lr=")]
            assert len(lrs) == 1 and len(lrs[0].split("=")[1].split(",")) >= 3
    # every claim on the learned gate has a hard-gated twin (throughput claims force the gate: already hard)
    sparsity = [c for c in claims["claims"] if "gate_rate" in json.dumps(c["measure"])
                and c["measure"]["kind"] != "ratio"]
    assert sparsity
    for claim in sparsity:
        if "_hard" not in json.dumps(claim["measure"]):
            base, low_start, _ = claim["id"].partition("-low-start")  # the low-initial-gate claims: "-hard-low-start"
            twin = by_id.get(base + "-hard" + low_start)
            assert twin is not None and "_hard" in json.dumps(twin["measure"]), claim["id"]


def test_claims_file_mistakes_are_user_errors(tmp_path):
    good = load_claims()
    for broken, message in (
        ({k: v for k, v in good.items() if k != "paper"}, "lacks 'paper'"),
        ({**good, "claims": [{k: v for k, v in good["claims"][0].items() if k != "cite"}]}, "lacks 'cite'"),
        ({**good, "claims": [{**good["claims"][0], "measure": {"kind": "guess"}}]}, "measure.kind"),
        ({**good, "claims": [{**good["claims"][0], "measure": {"kind": "needs"}}]}, "must say what it needs"),
        ({**good, "claims": [{**_claim(good, "ar-tgn-rise"),
                              "measure": {"kind": "curve", "statistic": {"name": "median"}}}]}, "statistic.name"),
    ):
        path = tmp_path / "claims.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(UserError, match=message):
            load_claims(path)


def test_difference_is_paired_over_shared_seeds_and_tuned_on_validation(tmp_path):
    claim = _claim(load_claims(), "ar-tgn-vs-rnn")
    tgn, gru = [0.9, 0.8, 0.95], [0.5, 0.45, 0.6]
    for seed in range(3):
        _run(tmp_path, "tgn", seed, variant="serial", accuracy=tgn[seed])
        _run(tmp_path, "gru", seed, accuracy=gru[seed], val_accuracy=0.5, task_config={"seq_len": 64, "lr": 1})
        # a better test score at another setting, worse on validation: tuning must not pick it
        _run(tmp_path, "gru", seed, accuracy=0.99, val_accuracy=0.1, task_config={"seq_len": 64, "lr": 2})
    runs = read_runs(tmp_path).to_pylist()
    result = evaluate({**claim, "tune": ["task.lr"]}, runs, [], "smoke", 2)
    ci = stats.ttest_rel(tgn, gru).confidence_interval(0.95)
    assert "paired" in result.text and result.mean == pytest.approx(sum(tgn) / 3 - sum(gru) / 3)
    assert f"± {(ci.high - ci.low) / 2:.3f}" in result.text
    assert result.text.endswith("; chosen on validation: gru task.lr=1")  # tgn had one setting: nothing chosen


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
    _run(tmp_path, "tgn", 0, variant="serial", accuracy=0.99)
    single = evaluate(claim, runs(), [], "smoke", 2)
    assert single.verdict == "inconclusive" and "fewer than 2 seeds" in single.text
    _run(tmp_path, "tgn", 1, variant="serial", accuracy=0.98)
    _run(tmp_path, "tgn", 2, variant="serial", accuracy=0.985)
    _run(tmp_path, "tgn", 3, variant="serial", status="failed")
    # not what Fig. 19 measured: the parallel variant, or a fixed lambda
    _run(tmp_path, "tgn", 4, variant="parallel", accuracy=0.1)
    _run(tmp_path, "tgn", 5, variant="serial", accuracy=0.1, model_config={**PAPER_LAMBDA, "lambda_mode": "fixed"})
    result = evaluate(claim, runs(), [], "smoke", 2)
    assert result.verdict == "supported" and result.seeds == "3" and "±" in result.text
    assert result.mean == pytest.approx(0.985)
    assert evaluate(claim, runs(), [], "default", 2).verdict == "not yet measured"  # other preset

    rnn = _claim(claims, "ar-rnn-chance")  # accuracy minus each row's chance level
    for seed, acc in enumerate([0.7, 0.72, 0.71]):
        _run(tmp_path, "gru", seed, accuracy=acc, chance=0.07)
    chance = evaluate(rnn, runs(), [], "smoke", 2)
    assert chance.verdict == "contradicted" and chance.mean == pytest.approx(0.71 - 0.07, abs=1e-4)
    versus = evaluate(_claim(claims, "ar-tgn-vs-rnn"), runs(), [], "smoke", 2)
    assert versus.verdict == "supported" and versus.text.startswith("+0.2")

    gate = _claim(claims, "ar-tgn-gate-rate")  # joint, run by run: one of two runs sparse and accurate
    for seed, rate in enumerate([0.01, 0.09]):
        _run(tmp_path, "tgn", 10 + seed, variant="serial", task="assoc_recall", gate_rate=rate, accuracy=0.99,
             accuracy_hard=0.99, gate_mean=0.2)
    joint = evaluate(gate, runs(), [], "smoke", 2)
    assert joint.verdict == "inconclusive" and joint.text.startswith("1/2 runs meet accuracy_hard ≥ 0.95 and "
                                                                     "gate_rate < 0.06")
    assert "seed 10: accuracy_hard 0.990, gate_rate 0.010, gate_mean 0.200" in joint.text


def test_minus_chance_needs_the_chance_column(tmp_path):
    for seed in (0, 1):
        _run(tmp_path, "gru", seed, accuracy=0.07)  # rows written before the chance column existed
    result = evaluate(_claim(load_claims(), "ar-rnn-chance"), read_runs(tmp_path).to_pylist(), [], "smoke", 2)
    assert result.verdict == "not yet measured" and "accuracy and chance" in result.text


def test_tuned_claims_are_not_measured_on_a_mix_of_learning_rates(tmp_path):
    claim = _claim(load_claims(), "ar-transformer-accuracy")
    for lr, acc in ((1e-3, 0.99), (3e-3, 0.2)):
        for seed in (0, 1):
            _run(tmp_path, "transformer", seed, accuracy=acc, train={"max_steps": 100, "lr": lr})
    result = evaluate(claim, read_runs(tmp_path).to_pylist(), [], "smoke", 2)
    assert result.verdict == "inconclusive" and "train.lr" in result.text and "validation" in result.text


def test_needs_claims_never_get_a_verdict(tmp_path):
    claims = load_claims()
    needs = [c for c in claims["claims"] if c["measure"]["kind"] == "needs"]
    assert len(needs) >= 7
    for seed in (0, 1, 2):  # even with rows that look like the claim's
        _run(tmp_path, "tgn", seed, task="wikitext", variant="parallel", gate_rate=0.089, perplexity=24.9,
             accuracy=0.3, preset="paper")
    runs = read_runs(tmp_path).to_pylist()
    for claim in needs:
        for preset in ("smoke", "cpu", "paper"):
            result = evaluate(claim, runs, [], preset, 2)
            assert result.verdict == "needs" and result.text.startswith("needs ")
            assert commands(claim, preset, "results")


def _points(accuracy, gate_rate, **extra):
    return [(step, {"accuracy": a, "gate_rate": g, **{k: v[i] for k, v in extra.items()}})
            for i, (step, a, g) in enumerate(zip(range(10, 110, 10), accuracy, gate_rate, strict=True))]


# Fig. 19's shape over 100 steps: incubation (low accuracy, low gate), a rise at 30-50, then sparsification
FIG19_ACC = [0.05, 0.06, 0.3, 0.8, 0.95, 0.99, 1.0, 1.0, 1.0, 1.0]
FIG19_GATE = [0.05, 0.08, 0.3, 0.5, 0.4, 0.3, 0.2, 0.1, 0.07, 0.055]


def test_curve_statistics_on_synthetic_curves():
    points = [{"step": float(s), **p} for s, p in _points(FIG19_ACC, FIG19_GATE)]
    assert curve_statistic({"name": "first_fraction_reaching", "metric": "accuracy", "threshold": 0.9},
                           points, 100) == pytest.approx(0.5)
    assert curve_statistic({"name": "first_fraction_reaching", "metric": "accuracy", "threshold": 1.01},
                           points, 100) == CENSORED  # never within the run: censored, not scored 1.0
    assert curve_statistic({"name": "at_fraction", "metric": "accuracy", "fraction": 0.2}, points, 100) == 0.06
    assert curve_statistic({"name": "peak_fraction", "metric": "gate_rate"}, points, 100) == pytest.approx(0.4)
    assert curve_statistic({"name": "end_over_peak", "metric": "gate_rate"}, points, 100) == pytest.approx(0.11)
    unsolved = [{**p, "accuracy": 0.5} for p in points]
    assert curve_statistic({"name": "end_over_peak", "metric": "gate_rate",
                            "when": {"metric": "accuracy", "at_least": 0.9}}, unsolved, 100) is None


def test_curve_claims_from_runs_and_curves(tmp_path):
    claims = load_claims()
    for seed, shift in enumerate((0.0, 0.01, -0.01)):
        gate = [g + shift for g in FIG19_GATE]
        _run(tmp_path, "tgn", seed, variant="serial", accuracy=1.0, gate_rate=gate[-1],
             curve=_points(FIG19_ACC, gate, accuracy_hard=[0.05] * 10, gate_rate_hard=gate))
        _run(tmp_path, "transformer", seed, accuracy=1.0,
             curve=_points([0.5, 0.995] + [1.0] * 8, [None] * 10))
    _run(tmp_path, "tgn", 7, variant="serial", accuracy=0.3, curve=_points([0.3] * 10, FIG19_GATE))  # unsolved
    runs = read_runs(tmp_path).to_pylist()
    curves = {}
    for point in read_curves(tmp_path).to_pylist():
        curves.setdefault(point["run_id"], []).append(point)

    def verdict(claim_id):
        return evaluate(_claim(claims, claim_id), runs, [], "smoke", 2, curves=curves)

    early = verdict("ar-transformer-early")
    assert early.verdict == "supported" and early.mean == pytest.approx(0.2)
    incubation = verdict("ar-tgn-incubation")  # accuracy at 20% of the run: 0.06 x3 and the unsolved run's 0.3
    assert incubation.verdict == "supported" and incubation.mean == pytest.approx(0.12)
    sparse = verdict("ar-tgn-sparsification")
    assert sparse.verdict == "supported" and sparse.seeds == "3" and "1 of 4 runs left out" in sparse.text
    # hard-gated: accuracy_hard never reaches 0.9, so no run qualifies for the hard-gated twin
    hard = verdict("ar-tgn-sparsification-hard")  # measured, but nothing qualifies: undecided, not "not yet measured"
    assert hard.verdict == "inconclusive" and "no run of tgn/serial qualifies" in hard.text
    assert "4 of 4 runs left out (final accuracy_hard < 0.9)" in hard.text
    rise = verdict("ar-tgn-rise")  # 0.5, 0.5, 0.5, and the unsolved seed never got there: censored
    assert rise.verdict == "budget-limited" and "3 of 4 reached accuracy ≥ 0.9, median fraction 0.500" in rise.text
    assert "seed(s) 7 never did within the run (censored)" in rise.text and rise.mean is None


def test_ring_claim_takes_the_smallest_and_largest_ring(tmp_path):
    for nodes, acc in ((8, [0.9, 0.92]), (16, [0.5, 0.55])):
        for seed, value in enumerate(acc):
            _run(tmp_path, "gcn", seed, task="ring_distance", accuracy=value, task_config={"num_nodes": nodes})
    runs = read_runs(tmp_path).to_pylist()
    result = evaluate(_claim(load_claims(), "ring-gcn-degrades"), runs, [], "smoke", 2)
    assert result.mean == pytest.approx(0.385) and result.verdict == "supported"


def test_throughput_ratio_from_bench_rows(tmp_path):
    claim = _claim(load_claims(), "chunked-tgn-vs-transformer-throughput")
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
    _run(tmp_path, "gru", 0, accuracy=0.02, chance=0.0)
    _run(tmp_path, "gru", 1, accuracy=0.022, chance=0.0)
    out_file = tmp_path / "report.md"
    code, _, _ = cli("report", "--results", tmp_path, "--preset", "smoke", "--out", out_file)
    text = out_file.read_text()
    table = [line for line in text.splitlines() if line.startswith("| **")]
    assert code == 0 and len(table) == len(load_claims()["claims"])
    chance = next(line for line in table if "ar-rnn-chance" in line)
    assert "**inconclusive**" in chance and "would be supported, but preset smoke decides nothing" in chance
    assert "0.021 ± " in chance
    assert "seqbench sweep --models gru,transformer,tgn" in chance
    assert "95% Student-t interval" in text
    code, _, err = cli("report", "--results", tmp_path, "--preset", "huge")
    assert code == 2 and "preset" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"claims": [{"id": "x"}]}))
    code, _, err = cli("report", "--results", tmp_path, "--claims", bad)
    assert code == 2 and "lacks" in err
