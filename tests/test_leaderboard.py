"""Leaderboards: one value per (config, seed), a table per setting, ties and paired gaps to the leader,
raw-number exports, --out, --task did-you-mean, accuracy_hard, --length."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from seqbench.analyse import leaderboard
from seqbench.results import iter_rows, read_evals, read_runs, write_evals, write_run


def _row(results, run_id, model, seed, accuracy, *, status="ok", gate_rate=None, task="mqar", setting=None,
         config_hash=None, minute=0, **extra):
    config = {"task_config": {"seq_len": 64, **(setting or {})}, "model_config": {"d_model": 16}, "train": {}}
    write_run(results, {"run_id": run_id, "model": model, "variant": "default", "task": task, "task_version": 1,
                        "preset": "smoke", "seed": seed, "status": status, "accuracy": accuracy,
                        "gate_rate": gate_rate, "n_params": 1000, "tokens_per_sec": 5000.0,
                        "config_json": json.dumps(config), "config_hash": config_hash or f"{model}{setting}{seed}",
                        "started_at": dt.datetime(2026, 1, 1, 12, minute, tzinfo=dt.timezone.utc), **extra}, [])


def _rows(results):
    return list(iter_rows(read_runs(results)))


def test_leaderboard_groups_seeds_and_ranks(tmp_path):
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        _row(tmp_path, f"a{seed}", "tgnlike", seed, acc, gate_rate=0.05 + 0.01 * seed)
    for seed, acc in enumerate([0.2, 0.3]):
        _row(tmp_path, f"b{seed}", "rnn", seed, acc)
    _row(tmp_path, "b9", "rnn", 9, None, status="failed")
    entries = leaderboard.build(_rows(tmp_path)).entries
    assert [e.model for e in entries] == ["tgnlike", "rnn"]
    top, rnn = entries
    assert top.seeds == [0, 1, 2] and top.score.mean == pytest.approx(0.9)
    assert top.gate_rate.mean == pytest.approx(0.06) and top.gate_rate.half_width > 0
    assert rnn.seeds == [0, 1] and rnn.not_ok == 1 and rnn.gate_rate.mean is None


def test_duplicates_are_one_sample_and_the_output_says_so(cli, tmp_path):
    for minute in range(3):  # seed 0 run three times: bit-identical rows of one cell
        _row(tmp_path, f"a0-{minute}", "transformer", 0, 0.0, config_hash="cell0", minute=minute)
    _row(tmp_path, "a1", "transformer", 1, 0.05, config_hash="cell1")
    board = leaderboard.build(_rows(tmp_path))
    (entry,) = board.entries
    low, high = stats.t.interval(0.95, 1, loc=0.025, scale=stats.sem([0.0, 0.05]))
    assert board.collapsed == 2 and entry.score.n == 2
    assert (entry.score.low, entry.score.high) == (pytest.approx(low), pytest.approx(high))
    code, out, _ = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "2 duplicate row(s) collapsed" in out


def test_each_setting_is_ranked_on_its_own(tmp_path):
    for nodes, accs in ((20, {"gcn": 0.9, "tgn": 0.8}), (100, {"gcn": 0.2, "tgn": 0.7})):
        for model, acc in accs.items():
            for seed in range(2):
                _row(tmp_path, f"{model}{nodes}{seed}", model, seed, acc + 0.01 * seed, task="ring_distance",
                     setting={"num_nodes": nodes})
    tables = leaderboard.build(_rows(tmp_path)).tables()
    assert list(tables) == [("ring_distance", "smoke", "task.num_nodes=20", "accuracy"),
                            ("ring_distance", "smoke", "task.num_nodes=100", "accuracy")]
    small, large = tables.values()
    assert [(e.rank, e.model) for e in small] == [(1, "gcn"), (2, "tgn")]
    assert [(e.rank, e.model) for e in large] == [(1, "tgn"), (2, "gcn")]


def test_ties_and_paired_gap_to_the_leader(tmp_path):
    leader = [0.90, 0.70, 0.80]
    close = [0.87, 0.68, 0.78]  # the same seed swing, a small steady gap: its interval overlaps the leader's
    far = [0.10, 0.12, 0.11]
    for model, values in (("a", leader), ("b", close), ("c", far)):
        for seed, value in enumerate(values):
            _row(tmp_path, f"{model}{seed}", model, seed, value)
    a, b, c = leaderboard.build(_rows(tmp_path)).entries
    assert (a.tied, a.gap) == (True, None)
    ci = stats.ttest_rel(close, leader).confidence_interval(0.95)
    assert b.gap.kind == "paired" and (b.gap.low, b.gap.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert b.score.overlaps(a.score) and b.gap.high < 0  # the intervals overlap, yet the paired test says behind
    assert b.tied is False and c.tied is False  # tied is the (Holm-corrected) paired test's, not the overlap's


def test_tied_uses_holms_correction_over_the_tables_comparisons(tmp_path):
    leader = [0.90, 0.70, 0.80]
    # five models, each behind by a small gap with a little noise: each paired p is just under 5%,
    # which Holm's correction for five comparisons does not call a difference
    gaps = [[0.030 + d, 0.015 + d, 0.0225 + d] for d in (0.0, 0.001, 0.002, 0.003, 0.004)]
    _rows_of = [("a", leader)] + [(f"m{i}", [v - g for v, g in zip(leader, gap, strict=True)])
                                  for i, gap in enumerate(gaps)]
    for model, values in _rows_of:
        for seed, value in enumerate(values):
            _row(tmp_path, f"{model}{seed}", model, seed, value)
    entries = leaderboard.build(_rows(tmp_path)).entries
    behind = [e for e in entries if e.rank > 1]
    raw = [stats.ttest_rel([e.per_seed[s] for s in range(3)], leader).pvalue for e in behind]
    assert all(p < 0.05 for p in raw)  # uncorrected, every one would read "different"
    corrected = multipletests(raw, alpha=0.05, method="holm")[0]
    assert [e.tied for e in behind] == [not r for r in corrected] and any(e.tied for e in behind)
    assert "Holm" in leaderboard.render(leaderboard.build(_rows(tmp_path)), "table")


def test_formats_export_raw_numbers_and_out_writes_a_file(cli, tmp_path):
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        _row(tmp_path, f"a{seed}", "tgnlike", seed, acc, accuracy_hard=acc - 0.5)
    for seed, acc in enumerate([0.1, 0.2, 0.25]):
        _row(tmp_path, f"b{seed}", "rnn", seed, acc)
    code, table, _ = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "0.900 ± 0.248" in table and "Student-t" in table and "accuracy_hard" in table
    assert "(paired)" in table
    code, markdown, _ = cli("leaderboard", "--results", tmp_path, "--format", "markdown")
    assert code == 0 and "| 1 | tgnlike |" in markdown and "0.400 ± 0.248" in markdown
    code, text, _ = cli("leaderboard", "--results", tmp_path, "--format", "csv")
    first, second = csv.DictReader(io.StringIO(text))
    low, high = stats.t.interval(0.95, 2, loc=0.9, scale=stats.sem([0.8, 0.9, 1.0]))
    assert float(first["mean"]) == pytest.approx(0.9) and float(first["low"]) == pytest.approx(low)
    assert float(first["high"]) == pytest.approx(high) and first["seeds"] == "0;1;2" and first["n"] == "3"
    assert first["interval"] == "t" and second["diff_interval"] == "paired" and second["tied"] == "False"
    out = tmp_path / "board.json"
    code, stdout, _ = cli("leaderboard", "--results", tmp_path, "--format", "json", "--out", out)
    data = json.loads(out.read_text())
    assert code == 0 and "wrote" in stdout and data["collapsed_duplicates"] == 0
    assert [e["model"] for e in data["entries"]] == ["tgnlike", "rnn"]
    assert data["entries"][0]["accuracy_hard"] == pytest.approx(0.4)


def test_unknown_task_gets_did_you_mean(cli, tmp_path):
    _row(tmp_path, "a0", "tgnlike", 0, 0.5)
    code, out, err = cli("leaderboard", "--results", tmp_path, "--task", "mqr")
    assert code == 2 and "Did you mean 'mqar'" in err and not out
    code, _, err = cli("leaderboard", "--results", tmp_path, "--task", "listops")
    assert code == 2 and "no runs of task 'listops'" in err


def test_length_ranks_by_the_evaluation_at_that_length(cli, tmp_path):
    for seed in range(2):
        _row(tmp_path, f"t{seed}", "transformer", seed, 0.9)
        _row(tmp_path, f"g{seed}", "gru", seed, 0.5)
        where = {"length_key": "seq_len", "trained_len": 64}
        write_evals(tmp_path, f"t{seed}", [{"seq_len": 128, **where, "status": "unsupported", "error": "positions"}])
        write_evals(tmp_path, f"g{seed}", [{"seq_len": 128, **where, "status": "ok", "accuracy": 0.4 + 0.1 * seed,
                                            "loss": 1.0}])
    evals = list(iter_rows(read_evals(tmp_path)))
    board = leaderboard.build(_rows(tmp_path), length=128, evals=evals, length_keys={"mqar": "seq_len"})
    gru, transformer = board.entries
    assert gru.model == "gru" and gru.score.mean == pytest.approx(0.45) and gru.rank == 1
    assert transformer.score.mean is None and transformer.not_ok == 2
    code, out, _ = cli("leaderboard", "--results", tmp_path, "--length", "64")  # the training length: run rows
    assert code == 0 and "at length 64" in out and "0.900" in out


def test_unreadable_file_is_a_rich_warning_and_skipped(cli, tmp_path, recwarn):
    _row(tmp_path, "a0", "tgnlike", 0, 0.5)
    (tmp_path / "runs" / "broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "runs" / ".tmp-inflight.parquet").write_bytes(b"half")  # a write in flight: ignored silently
    code, out, err = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "tgnlike" in out
    assert "warning:" in err and "broken.parquet" in err and ".tmp-inflight" not in err
    assert not [w for w in recwarn if "unreadable" in str(w.message)]  # shown to the user, not as a Python warning
