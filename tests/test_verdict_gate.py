"""Verdicts that know "not yet" from "cannot": the verdict gate on fake curves (a loser still rising, a
task no model learned, a censored first passage), old rows read from their curves or named as needing
a re-run, intervals that stay inside [0, 1], tuning on the metric a claim reads, joint sparsity
claims and the sensitivity table."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import statistics

import pytest
from claim_fixtures import PAPER_TGN, bare_claims

from seqbench.analyse.gate import run_ending
from seqbench.analyse.report import evaluate, load_claims, sensitivity_section
from seqbench.analyse.stats import describe_difference, describe_values, proportion_interval, sign_flip_p
from seqbench.analyse.tuning import tune

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CLAIMS = bare_claims()


def row(model, seed, *, task="mqar", variant="default", lr=None, max_steps=100, **columns):
    train = {"max_steps": max_steps, **({"lr": lr} if lr is not None else {})}
    config = {"task_config": {"seq_len": 64}, "model_config": PAPER_TGN if model == "tgn" else {}, "train": train}
    return {"run_id": f"{task}-{model}-{variant}-{seed}-{lr}", "model": model, "variant": variant, "task": task,
            "task_version": 1, "preset": "cpu", "seed": seed, "status": "ok", "config_json": json.dumps(config),
            "config_hash": f"{task}{model}{variant}{lr}", "started_at": NOW, **columns}


def curve(values, every=10):
    return [{"step": float(every * (i + 1)), "accuracy": v} for i, v in enumerate(values)]


RISING = [0.02 + 0.003 * i for i in range(20)]  # Mamba on MQAR: slow, steady, still going at the budget
FLAT = [0.05, 0.06, 0.07, 0.08] + [0.08] * 16


def test_a_loser_still_rising_at_the_budget_makes_the_claim_budget_limited():
    claim = CLAIMS["mqar-mamba-collapses"]  # supported if accuracy - chance <= 0.1
    runs = [row("mamba", s, accuracy=0.08 + s / 100, chance=0.02, max_steps=200) for s in range(3)]
    runs += [row("tgn", s, variant="parallel", accuracy=0.9, chance=0.02, max_steps=200) for s in range(3)]
    flat = {r["run_id"]: curve(FLAT) for r in runs}
    assert evaluate(claim, runs, [], "cpu", 2, curves=flat).verdict == "supported"

    rising = {**flat, runs[0]["run_id"]: curve(RISING), runs[2]["run_id"]: curve(RISING)}
    result = evaluate(claim, runs, [], "cpu", 2, curves=rising)
    assert result.verdict == "budget-limited" and "would be supported" in result.text
    # named, and by how much: a line through the last 5 of 20 evaluations rises 0.003 per 10 steps
    assert "mamba still improving at the budget: seed 0 +0.012 over the last 20% of evaluations" in result.why
    assert "(+0.006 per 10% of training) at step 200" in result.why and "seed 2 +0.012" in result.why
    assert "seed 1" not in result.why

    # the same rows with how they ended recorded (new rows): a plateau stop is final whatever the curve
    stopped = [{**r, "stop_reason": "plateau"} for r in runs]
    assert evaluate(claim, stopped, [], "cpu", 2, curves=rising).verdict == "supported"


def test_the_winner_may_still_be_rising_only_the_loser_is_gated():
    claim = CLAIMS["mqar-tgn-vs-mamba"]  # TGN minus Mamba: supported says Mamba is the loser
    runs = [row("mamba", s, accuracy=0.05 + s / 100, chance=0.02) for s in range(3)]
    runs += [row("tgn", s, variant="parallel", accuracy=0.8 + s / 50, chance=0.02) for s in range(3)]
    curves = {r["run_id"]: curve(RISING if r["model"] == "tgn" else FLAT) for r in runs}
    assert evaluate(claim, runs, [], "cpu", 2, curves=curves).verdict == "supported"
    curves = {r["run_id"]: curve(FLAT if r["model"] == "tgn" else RISING) for r in runs}
    assert evaluate(claim, runs, [], "cpu", 2, curves=curves).verdict == "budget-limited"


def test_no_model_learned_the_task_makes_every_claim_on_it_budget_limited():
    runs = [row("tgn", s, task="listops", variant="parallel", accuracy=0.17 + s / 100, chance=0.15,
                stop_reason="plateau") for s in range(3)]
    runs += [row("mamba", s, task="listops", accuracy=0.2, chance=0.15, stop_reason="plateau") for s in range(3)]
    for claim_id in ("listops-tgn-accuracy", "listops-tgn-vs-mamba"):
        result = evaluate(CLAIMS[claim_id], runs, [], "cpu", 2)
        assert result.verdict == "budget-limited", claim_id
        assert result.why.startswith("no model learned the task at this budget: the best, mamba, is +0.050")
    # one model learning it (0.5 above chance) is the positive control passing: the claim is decided
    learner = [{**r, "accuracy": 0.65} if r["model"] == "mamba" else r for r in runs]
    assert evaluate(CLAIMS["listops-tgn-accuracy"], learner, [], "cpu", 2).verdict == "contradicted"


def test_a_first_passage_some_runs_never_reached_is_censored_not_scored():
    claim = CLAIMS["ar-transformer-early"]  # first validation accuracy >= 0.99, as a fraction of the run
    runs = [row("transformer", s, task="assoc_recall", accuracy=a, stop_reason="budget")
            for s, a in enumerate((1.0, 0.2, 0.21))]
    curves = {runs[0]["run_id"]: curve([0.2] * 9 + [1.0]),  # reached at step 100 of 100
              runs[1]["run_id"]: curve([0.2] * 10), runs[2]["run_id"]: curve([0.21] * 10)}
    result = evaluate(claim, runs, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited" and result.mean is None
    assert result.text.startswith("1 of 3 reached accuracy ≥ 0.99, median fraction 1.000 among those; "
                                  "seed(s) 1, 2 never did within the run (censored)")
    assert "first passage lies beyond the budget" in result.why
    every = {r["run_id"]: curve([0.5, 0.995] + [1.0] * 8) for r in runs}
    assert evaluate(claim, runs, [], "cpu", 2, curves=every).verdict == "supported"


def test_old_rows_are_read_from_their_curves_or_named_as_needing_a_rerun():
    old = row("mamba", 0, accuracy=0.05)  # no stop_reason, no val_trend: from before they existed
    ending = run_ending(old, curve(RISING))
    assert ending.stop_reason == "budget" and ending.improving and ending.trend == pytest.approx(0.012)
    runs = [row("mamba", s, accuracy=0.05 + s / 100, chance=0.02) for s in range(3)]
    runs += [row("tgn", s, variant="parallel", accuracy=0.9, chance=0.02) for s in range(3)]  # a learner
    result = evaluate(CLAIMS["mqar-mamba-collapses"], runs, [], "cpu", 2, curves={})
    assert result.verdict == "needs a re-run" and "lack stop_reason and val_trend and have no curve" in result.why


@pytest.mark.parametrize("values", [[1.0, 0.078, 0.33], [0.99, 0.98, 0.1, 0.05], [0.5, 0.9, 0.95]])
def test_accuracy_intervals_stay_inside_0_1(values):
    described = describe_values(values)
    assert 0.0 <= described.low <= described.high <= 1.0 and "± 0.000" not in described.text


def test_solve_fail_seeds_read_k_of_n_with_clopper_pearson_beside_the_median():
    text = describe_values([1.0, 0.078, 0.33]).text
    low, high = proportion_interval(1, 3)
    assert (round(low, 2), round(high, 2)) == (0.01, 0.91)  # the exact interval of 1 of 3
    assert text.startswith("1/3 solved (≥ 0.9; Clopper-Pearson 95% 0.01–0.91), median 0.330; "
                           "mean 0.469 [0.000, 1.000]")
    assert describe_values([1.0, 1.0, 1.0]).text == "3/3 seeds at 1.000"
    assert describe_values([0.1, 0.12, 0.09]).text.endswith("(95% Student-t interval)")  # no split: a plain interval


def test_a_difference_carries_an_exact_sign_flip_test_and_the_smallest_detectable_difference():
    a, b = {0: 0.9, 1: 0.8, 2: 0.85, 3: 0.7}, {0: 0.5, 1: 0.6, 2: 0.4, 3: 0.72}
    diffs = [a[s] - b[s] for s in range(4)]
    # the exact two-sided test by hand: the share of the 16 sign patterns with |mean| at least the observed
    observed = abs(statistics.mean(diffs))
    flips = [abs(statistics.mean(d * s for d, s in zip(diffs, signs, strict=True))) >= observed - 1e-12
             for signs in itertools.product((1, -1), repeat=4)]
    assert sign_flip_p(diffs) == pytest.approx(sum(flips) / 16)
    text = describe_difference(a, b).text
    assert f"exact sign-flip p = {sum(flips) / 16:.3g} over 16 sign patterns" in text
    assert "4 pairs detect a difference of ≥ 2.1" in text  # statsmodels TTestPower, 80% power, 5% two-sided
    assert describe_difference({0: 0.9, 1: 0.9}, {0: 0.1, 1: 0.1}).text.startswith("2/2 pairs differ by +0.800")


def _gated(seed, lr, val_accuracy, val_accuracy_hard, accuracy_hard, gate_rate):
    return row("tgn", seed, task="assoc_recall", variant="serial", lr=lr, accuracy=1.0, val_accuracy=val_accuracy,
               val_loss=0.01 if lr == 0.01 else 0.02, val_accuracy_hard=val_accuracy_hard,
               accuracy_hard=accuracy_hard, gate_rate=gate_rate, gate_rate_hard=gate_rate, gate_mean=0.04,
               stop_reason="plateau")


def test_a_hard_gated_claim_is_tuned_on_hard_gated_validation_accuracy():
    # soft accuracy ties at 1.0; the loss prefers lr 1e-2, where the gate never opens (hard accuracy 0.08)
    runs = [_gated(s, lr, 1.0, hard, hard, rate) for s in range(3)
            for lr, hard, rate in ((0.001, 0.85 + s / 100, 0.21), (0.003, 0.5, 0.1), (0.01, 0.08, 0.0))]
    assert {r["seed"]: json.loads(r["config_json"])["train"]["lr"] for r in tune(runs, ["train.lr"]).rows} == {
        0: 0.01, 1: 0.01, 2: 0.01}
    assert {json.loads(r["config_json"])["train"]["lr"] for r in tune(runs, ["train.lr"], "val_accuracy_hard").rows
            } == {0.001}
    result = evaluate(CLAIMS["ar-tgn-accuracy-hard"], runs, [], "cpu", 2)
    assert "chosen on validation: train.lr=0.001 (grid edge" in result.text
    assert result.text.startswith("0.860 ± ")
    # the joint sparsity claim, run by run, at the rate the hard-gated accuracy chose: accurate, not sparse
    joint = evaluate(CLAIMS["ar-tgn-gate-rate-hard"], runs, [], "cpu", 2)
    assert joint.verdict == "contradicted" and joint.text.startswith("0/3 runs meet accuracy_hard ≥ 0.95 and "
                                                                     "gate_rate_hard < 0.06")
    # rows from before val_accuracy_hard existed: named, never chosen on the soft accuracy instead
    old = [{k: v for k, v in r.items() if k != "val_accuracy_hard"} for r in runs]
    stale = evaluate(CLAIMS["ar-tgn-accuracy-hard"], old, [], "cpu", 2)
    assert stale.verdict == "needs a re-run" and "rows lack val_accuracy_hard" in stale.text


def test_the_sensitivity_table_shows_every_grid_value_and_flags_an_edge_choice():
    runs = [_gated(s, lr, 1.0, hard, hard, rate) for s in range(3)
            for lr, hard, rate in ((0.001, 0.85, 0.21), (0.003, 0.5, 0.1), (0.01, 0.08, 0.0))]
    claims = {"claims": [CLAIMS["ar-tgn-accuracy-hard"]]}
    lines = sensitivity_section(claims, runs, "cpu")
    text = "\n".join(lines)
    assert "### tgn/serial on assoc_recall: tuned on val_accuracy_hard (claims: ar-tgn-accuracy-hard)" in text
    rows = [line for line in lines if line.startswith("| —")]
    assert len(rows) == 3 and "| train.lr=0.003 | 0.500 | 0.500 | 3 |  |" in text
    chosen = next(line for line in rows if "chosen" in line)
    assert "train.lr=0.001 | 0.850 | 0.850 | 3 | **chosen** (train.lr=0.001 is the grid's smallest" in chosen


def test_a_dynamics_claim_turns_target_stopping_off_and_matches_rows_from_before_the_setting():
    shipped = next(c for c in load_claims()["claims"] if c["id"] == "ar-tgn-sparsification")
    (stop,) = [item for item in shipped["presets"]["cpu"]["set"]
               if item.startswith(("train.stop_at", "tgn:train.stop_at"))]
    assert stop in ("train.stop_at=none", "tgn:train.stop_at=none")  # TGN runs its whole horizon
    claim = CLAIMS["ar-tgn-sparsification"]
    claim["presets"]["cpu"]["set"] = [stop]  # the rows below carry no other setting
    points = curve([0.05, 0.5, 1.0, 1.0, 1.0])
    for p, g in zip(points, (0.1, 0.5, 0.3, 0.1, 0.05), strict=True):
        p["gate_rate"] = g
    old = [row("tgn", s, task="assoc_recall", variant="serial", accuracy=1.0, stop_reason="budget") for s in range(2)]
    stopped = []
    for r in old:  # the same runs stopped at a target: not the evidence a dynamics claim reads
        config = json.loads(r["config_json"])
        config["train"]["stop_at"] = 0.99
        stopped.append({**r, "run_id": r["run_id"] + "-t", "config_json": json.dumps(config)})
    curves = {r["run_id"]: points for r in old + stopped}
    assert evaluate(claim, old, [], "cpu", 2, curves=curves).seeds == "2"
    assert evaluate(claim, stopped, [], "cpu", 2, curves=curves).verdict == "not yet measured"


def test_the_sensitivity_table_of_rows_without_the_tuned_on_column_shows_the_grid_with_no_choice():
    runs = [{k: v for k, v in _gated(s, lr, 1.0, hard, hard, rate).items() if k != "val_accuracy_hard"}
            for s in range(3) for lr, hard, rate in ((0.001, 0.85, 0.21), (0.01, 0.08, 0.0), (0.003, 0.5, 0.1))]
    text = "\n".join(sensitivity_section({"claims": [CLAIMS["ar-tgn-accuracy-hard"]]}, runs, "cpu"))
    assert "| — | train.lr=0.001 | — | 0.850 | 3 | no choice: rows lack val_accuracy_hard |" in text
    soft = "\n".join(sensitivity_section({"claims": [CLAIMS["ar-tgn-accuracy"]]}, runs, "cpu"))
    assert "**chosen** (tie on validation, broken by the lower val_loss; train.lr=0.01 is the grid's largest" in soft


def test_the_sensitivity_table_says_when_the_choice_was_the_fewest_steps_to_the_target():
    runs = []
    for s in range(3):
        for lr, steps in ((0.001, 900), (0.003, 400), (0.01, 700)):
            runs.append({**_gated(s, lr, 0.99 + lr, 0.9, 0.9, 0.2), "stop_reason": "target", "steps": steps})
    text = "\n".join(sensitivity_section({"claims": [CLAIMS["ar-tgn-accuracy"]]}, runs, "cpu"))
    # 1e-2 has the highest (censored) validation score; 3e-3 got to the target first
    assert ("| train.lr=0.003 | 0.993 | 1.000 | 3 | **chosen** (3 values stopped at the target at every tuning "
            "seed, where validation is censored: the fewest mean steps to it chosen (train.lr=0.003: 400, "
            "train.lr=0.01: 700, train.lr=0.001: 900)) |") in text
