"""Intervals against scipy directly: Student t for one model, paired t over shared seeds, Welch otherwise;
and the one-sample-per-cell rule that feeds them."""

from __future__ import annotations

import datetime as dt

import pytest
from scipy import stats

from seqbench.analyse.stats import difference_interval, mean_interval
from seqbench.results import one_per_cell


@pytest.mark.parametrize("values", [[0.5, 0.7, 0.9], [0.1, 0.1, 0.4, 0.35], [1.0, 0.98], [0.2, 0.25, 0.3, 0.1, 0.4]])
def test_mean_interval_is_scipys_student_t(values):
    got = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values), scale=stats.sem(values))
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.kind == "t" and got.n == len(values)


def test_mean_interval_edge_cases():
    assert mean_interval([0.4, 0.4, 0.4]).half_width == 0.0
    one = mean_interval([0.7])
    assert one.mean == 0.7 and one.half_width is None and one.text() == "0.700 ± n/a"
    assert mean_interval([None, float("nan")]).text() == "—"


def test_difference_over_shared_seeds_is_scipys_paired_interval():
    a = {0: 0.9, 1: 0.95, 2: 0.7, 3: 0.99}
    b = {0: 0.6, 1: 0.7, 2: 0.5, 9: 0.1}  # seed 9 has no partner: left out of the pairs
    got = difference_interval(a, b)
    ci = stats.ttest_rel([0.9, 0.95, 0.7], [0.6, 0.7, 0.5]).confidence_interval(0.95)
    assert got.kind == "paired" and got.n == 3
    assert (got.low, got.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert got.mean == pytest.approx((0.3 + 0.25 + 0.2) / 3)


def test_paired_is_tighter_than_welch_when_seeds_move_together():
    a = {0: 0.50, 1: 0.70, 2: 0.90}
    b = {0: 0.45, 1: 0.66, 2: 0.84}  # the same seed-to-seed swing, a steady gap
    paired = difference_interval(a, b)
    welch = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(0.95)
    assert paired.half_width < (welch.high - welch.low) / 2 / 10


def test_difference_without_shared_seeds_is_scipys_welch_interval():
    a, b = {0: 0.9, 1: 0.95, 2: 0.99, 3: 0.97}, {4: 0.3, 5: 0.5, 6: 0.45}
    got = difference_interval(a, b)
    ci = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(0.95)
    assert got.kind == "welch" and (got.low, got.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    one_shared = difference_interval({0: 1.0, 1: 0.9, 2: 0.8}, {0: 0.5, 7: 0.6, 8: 0.2})
    assert one_shared.kind == "welch"  # a single shared seed is no pairing
    assert difference_interval({0: 1.0}, {1: 0.5, 2: 0.6}).half_width is None


def _row(config_hash, seed, accuracy, minute, status="ok"):
    return {"run_id": f"{config_hash}-{minute}", "config_hash": config_hash, "seed": seed, "status": status,
            "accuracy": accuracy, "started_at": dt.datetime(2026, 1, 1, 12, minute, tzinfo=dt.timezone.utc)}


def test_one_per_cell_keeps_the_newest_ok_row_and_counts_the_rest():
    rows = [_row("a", 0, 0.10, 1), _row("a", 0, 0.10, 2), _row("a", 0, 0.30, 3),  # re-runs of one cell
            _row("a", 0, None, 4, status="failed"),  # a newer failure does not replace an ok row
            _row("b", 1, 0.50, 1), _row("c", 2, None, 1, status="failed"), _row("c", 2, None, 2, status="failed")]
    cells = one_per_cell(rows)
    assert cells.collapsed == 4
    kept = {r["config_hash"]: r for r in cells.rows}
    assert kept["a"]["accuracy"] == 0.30 and kept["b"]["accuracy"] == 0.50
    assert kept["c"]["run_id"] == "c-2"  # no ok row: the newest failure stands for the cell


def test_duplicated_rows_do_not_narrow_the_interval():
    per_seed = [0.0, 0.05, 0.25]
    rows = [_row(f"h{seed}", seed, value, 1) for seed, value in enumerate(per_seed)]
    rows += [_row("h0", 0, 0.0, 2)] * 5  # bit-identical re-runs of seed 0
    cells = one_per_cell(rows)
    got = mean_interval([r["accuracy"] for r in cells.rows])
    low, high = stats.t.interval(0.95, 2, loc=0.1, scale=stats.sem(per_seed))
    assert cells.collapsed == 5 and (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
