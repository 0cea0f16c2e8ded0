"""Leaderboard statistics: the 95% t-interval against scipy, the ± sign in every format, unreadable files."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from scipy import stats

from seqbench import leaderboard
from seqbench.leaderboard import mean_interval
from seqbench.results import write_run


@pytest.mark.parametrize("values", [[0.5, 0.7, 0.9], [0.1, 0.1, 0.4, 0.35], [1.0, 0.98], [0.2, 0.25, 0.3, 0.1, 0.4]])
def test_interval_matches_scipy(values):
    stat = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values), scale=stats.sem(values))
    assert stat.mean == pytest.approx((low + high) / 2) and stat.half_width == pytest.approx((high - low) / 2)
    assert stat.n == len(values)


def test_interval_known_values():
    stat = mean_interval([1.0, 2.0, 3.0])  # s = 1, t(0.975, 2) = 4.302653
    assert stat.mean == 2.0 and stat.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean_interval([0.4, 0.4, 0.4]).half_width == 0.0
    one = mean_interval([0.7])
    assert one.mean == 0.7 and one.half_width is None and one.text() == "0.700 ± n/a"
    assert mean_interval([None, float("nan")]).text() == "—"


def _row(results, run_id, model, seed, accuracy, *, status="ok", gate_rate=None, task="mqar", setting=None):
    config = {"task_config": {"seq_len": 64, **(setting or {})}, "model_config": {"d_model": 16}, "train": {}}
    write_run(results, {"run_id": run_id, "model": model, "variant": "default", "task": task, "task_version": 1,
                        "preset": "smoke", "seed": seed, "status": status, "accuracy": accuracy,
                        "gate_rate": gate_rate, "n_params": 1000, "tokens_per_sec": 5000.0,
                        "config_json": json.dumps(config), "config_hash": run_id}, [])


def test_leaderboard_groups_seeds_and_ranks(tmp_path):
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        _row(tmp_path, f"a{seed}", "tgnlike", seed, acc, gate_rate=0.05 + 0.01 * seed)
    for seed, acc in enumerate([0.2, 0.3]):
        _row(tmp_path, f"b{seed}", "rnn", seed, acc)
    _row(tmp_path, "b9", "rnn", 9, None, status="failed")
    from seqbench.results import iter_rows, read_runs

    entries = leaderboard.build(list(iter_rows(read_runs(tmp_path))))
    assert [e.model for e in entries] == ["tgnlike", "rnn"]
    top, rnn = entries
    assert top.seeds == 3 and top.score.mean == pytest.approx(0.9)
    assert top.gate_rate.mean == pytest.approx(0.06) and top.gate_rate.half_width > 0
    assert rnn.seeds == 2 and rnn.not_ok == 1 and rnn.gate_rate.mean is None


def test_every_format_shows_plus_minus_and_names_the_interval(cli, tmp_path):
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        _row(tmp_path, f"a{seed}", "tgnlike", seed, acc)
    code, table, _ = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "±" in table and "95% t-interval" in table
    code, markdown, _ = cli("leaderboard", "--results", tmp_path, "--format", "markdown")
    assert code == 0 and "0.900 ± 0.248" in markdown and "95% t-interval" in markdown
    code, text, _ = cli("leaderboard", "--results", tmp_path, "--format", "csv")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["score"] == "0.900 ± 0.248" and float(row["score_ci95"]) == pytest.approx(0.2484, abs=1e-4)
    assert row["seeds"] == "3" and row["params"] == "1,000" and row["tokens/s"] == "5,000"


def test_unreadable_file_is_a_rich_warning_and_skipped(cli, tmp_path, recwarn):
    _row(tmp_path, "a0", "tgnlike", 0, 0.5)
    (tmp_path / "runs" / "broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "runs" / ".tmp-inflight.parquet").write_bytes(b"half")  # a write in flight: ignored silently
    code, out, err = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "tgnlike" in out
    assert "warning:" in err and "broken.parquet" in err and ".tmp-inflight" not in err
    assert not [w for w in recwarn if "unreadable" in str(w.message)]  # shown to the user, not as a Python warning
