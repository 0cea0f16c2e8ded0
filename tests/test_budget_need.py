"""What it would take: a budget-limited claim states the budget that would likely decide it, from its curves'
pace, and what that costs here (seqbench.analyse.budget_need), on fabricated rows and curves."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from claim_fixtures import PAPER_TGN, bare_claims

from seqbench.analyse.budget_need import cost_text, mean_pace, nice, per_100, run_pace
from seqbench.analyse.report import evaluate

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CLAIMS = bare_claims()


def row(model, seed, *, task="mqar", variant="default", max_steps=200, wall=36.0, **columns):
    config = {"task_config": {"seq_len": 64}, "model_config": PAPER_TGN if model == "tgn" else {},
              "train": {"max_steps": max_steps}}
    return {"run_id": f"{task}-{model}-{variant}-{seed}", "model": model, "variant": variant, "task": task,
            "task_version": 1, "preset": "cpu", "seed": seed, "status": "ok", "config_json": json.dumps(config),
            "config_hash": f"{task}{model}{variant}", "started_at": NOW, "steps": max_steps, "wall_time_s": wall,
            "threads": 1, "device": "cpu (1 threads)", **columns}


def curve(values, every=10):
    return [{"step": float(every * (i + 1)), "accuracy": v} for i, v in enumerate(values)]


RISING = [0.02 + 0.003 * i for i in range(20)]  # +0.0003 per step, still going at step 200
FALLING = [0.2 - 0.003 * i for i in range(20)]
FLAT = [0.05, 0.06, 0.07, 0.08] + [0.08] * 16


def mqar_runs():
    # Mamba 0.065, 0.075, 0.085 above chance: supported (<= 0.1) were it not still rising
    runs = [row("mamba", s, accuracy=0.085 + s / 100, chance=0.02) for s in range(3)]
    return runs + [row("tgn", s, variant="parallel", accuracy=0.9, chance=0.02) for s in range(3)]


def test_a_loser_still_rising_gets_the_budget_that_would_decide_it_and_its_cost():
    runs = mqar_runs()
    curves = {r["run_id"]: curve(RISING if r["model"] == "mamba" else FLAT) for r in runs}
    result = evaluate(CLAIMS["mqar-mamba-collapses"], runs, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited" and "would be supported" in result.text
    # the measured 0.075 is 0.025 from the rule's edge (0.1); at +0.0003 a step that is 83 more steps
    # than today's 200: 283, rounded up to two figures
    assert "what it would take: ≈ 290 steps (" in result.why and "today's 200" in result.why
    assert "mamba, at its mean pace over its seeds (+0.030 per 100 steps)" in result.why
    assert "takes the measured +0.075 to the edge of the rule the verdict rests on (≤ 0.1)" in result.why
    # the claim's sweep (3 Mamba, 3 TGN rows at 0.18 s a step) at 290 steps: 313 s
    assert "the claim's sweep, 6 runs: ~0.1 core-hours here, fits one day of this 2-core CPU" in result.why
    assert "a lower bound" in result.why
    assert result.need == "≈ 290 steps, ~0.1 core-hours here"  # the summary's brief


def test_a_pace_that_does_not_close_the_gap_cannot_be_extrapolated():
    runs = mqar_runs()
    # seed 0 still rising (the gate fires), the other two falling: the mean pace is negative
    curves = {r["run_id"]: curve(FLAT) for r in runs}
    curves.update({runs[0]["run_id"]: curve(RISING), runs[1]["run_id"]: curve(FALLING),
                   runs[2]["run_id"]: curve(FALLING)})
    result = evaluate(CLAIMS["mqar-mamba-collapses"], runs, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited"
    assert "what it would take cannot be extrapolated from the curves: the mean pace of mamba (-0.010 per 100 steps)" \
        in result.why and "≈" not in result.why and result.need == "cannot be extrapolated"


def test_a_winner_rising_faster_than_the_loser_leaves_nothing_to_extrapolate():
    runs = [row("mamba", s, accuracy=0.05 + s / 100, chance=0.02) for s in range(3)]
    runs += [row("tgn", s, variant="parallel", accuracy=0.8 + s / 50, chance=0.02) for s in range(3)]
    steep = [0.3 + 0.01 * i for i in range(20)]
    curves = {r["run_id"]: curve(steep if r["model"] == "tgn" else RISING) for r in runs}
    result = evaluate(CLAIMS["mqar-tgn-vs-mamba"], runs, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited"
    assert "cannot be extrapolated" in result.why and "the other side's +0.100 per 100 steps" in result.why


def test_no_model_learned_the_task_the_quickest_learner_gives_the_budget():
    runs = [row("tgn", s, task="listops", variant="parallel", accuracy=0.17 + s / 100, chance=0.15, max_steps=100)
            for s in range(3)]
    runs += [row("mamba", s, task="listops", accuracy=0.2, chance=0.15, max_steps=100) for s in range(3)]
    # Mamba 0.05 above chance, rising 0.0003 a step: 0.1 above it 167 steps later; TGN flat, no pace
    curves = {r["run_id"]: curve(RISING if r["model"] == "mamba" else FLAT) for r in runs}
    for claim_id in ("listops-tgn-accuracy", "listops-tgn-vs-mamba"):
        result = evaluate(CLAIMS[claim_id], runs, [], "cpu", 2, curves=curves)
        assert result.verdict == "budget-limited" and result.why.startswith("no model learned the task"), claim_id
        assert "what it would take: ≈ 270 steps (2.7x today's 100;" in result.why
        assert "the quickest learner of the sweep, mamba (+0.050 from chance), at its mean validation pace " \
               "(+0.030 per 100 steps), is 0.1 above chance" in result.why
    # runs that stopped on a plateau would not move with more steps: nothing to extrapolate
    plateaued = [{**r, "stop_reason": "plateau"} for r in runs]
    result = evaluate(CLAIMS["listops-tgn-accuracy"], plateaued, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited"
    assert "cannot be extrapolated from the curves: no model and setting of the sweep was still rising" in result.why


def test_a_censored_first_passage_gets_the_slowest_runs_budget_or_says_it_cannot():
    claim = CLAIMS["ar-transformer-early"]  # first validation accuracy >= 0.99, as a fraction of the run
    runs = [row("transformer", s, task="assoc_recall", accuracy=a, stop_reason="budget", max_steps=100)
            for s, a in enumerate((1.0, 0.4, 0.3))]
    curves = {runs[0]["run_id"]: curve([0.2] * 9 + [1.0]),
              runs[1]["run_id"]: curve([0.2 + 0.02 * i for i in range(10)]),  # 0.38 at step 100, +0.002 a step
              runs[2]["run_id"]: curve([0.21 + 0.01 * i for i in range(10)])}  # 0.30 at step 100, +0.001 a step
    result = evaluate(claim, runs, [], "cpu", 2, curves=curves)
    assert result.verdict == "budget-limited" and "first passage lies beyond the budget" in result.why
    # seed 2 needs 0.69 more at 0.001 a step: 790 steps; seed 1 only 405
    assert "what it would take: ≈ 790 steps (7.9x today's 100;" in result.why
    assert "the slowest censored run of transformer, seed 2, at its pace (+0.100 per 100 steps)" in result.why
    curves[runs[2]["run_id"]] = curve([0.3] * 10)
    result = evaluate(claim, runs, [], "cpu", 2, curves=curves)
    assert "cannot be extrapolated from the curves: censored seed(s) 2 of transformer were not rising" in result.why


def test_the_pace_of_a_run_is_its_slope_per_step_zero_when_it_stopped_itself_unknown_without_a_curve():
    assert run_pace(row("gru", 0), curve(RISING)) == pytest.approx(0.0003)
    assert run_pace(row("gru", 0, stop_reason="plateau"), curve(RISING)) == 0.0
    assert run_pace(row("gru", 0, stop_reason="budget"), []) is None
    rows = [row("gru", 0), row("gru", 1)]
    assert mean_pace(rows, {rows[0]["run_id"]: curve(RISING)}, "accuracy") == (None, [1])


def test_the_cost_says_whether_it_fits_a_day_of_this_cpu_and_else_by_what_factor():
    rows = [row("gru", s, wall=100.0, max_steps=100) for s in range(10)]  # 1 core-second a step each
    assert cost_text(rows, 1_000) == "the claim's sweep, 10 runs: ~2.8 core-hours here, fits one day of this 2-core CPU"
    # 10 runs x 24,000 steps = 66.7 core-hours: 1.4 days of 2 cores
    assert cost_text(rows, 24_000) == ("the claim's sweep, 10 runs: ~67 core-hours here, 1.4 days of this 2-core CPU; "
                                       "in one day it needs ≥ 3 such cores, or hardware 1.4x this CPU's throughput "
                                       "(a GPU)")
    threaded = [{**r, "threads": 2} for r in rows]  # two cores a run: twice the core-hours
    assert "~5.6 core-hours" in cost_text(threaded, 1_000)
    assert cost_text([{**r, "wall_time_s": None} for r in rows], 100).endswith("the rows record no wall time")
    assert "device-hours on cuda" in cost_text([{**r, "device": "cuda"} for r in rows], 100)


def test_estimates_round_up_to_two_figures_and_paces_never_read_in_scientific_notation():
    assert [nice(x) for x in (283.3, 4733, 18_001, 96, 1000)] == [290, 4800, 19_000, 96, 1000]
    assert per_100(4e-7) == "+0.000040 per 100 steps" and per_100(-0.0003) == "-0.030 per 100 steps"
