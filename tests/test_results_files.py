"""Results files at the boundary: readers skip (and name) files they cannot use, writers leave no stale
temp files behind and create files with the process's umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqbench.results import (
    BENCH_SCHEMA,
    STALE_TEMP_SECONDS,
    Status,
    current_umask,
    is_stale_temp,
    read_bench,
    read_curves,
    read_runs,
    remove_stale_temps,
    write_bench_row,
    write_run,
)


def _run(results, run_id, accuracy=0.5, seed=0):
    config = {"task_config": {"seq_len": 64}, "model_config": {"d_model": 16}, "train": {}}
    return write_run(results, {"run_id": run_id, "model": "gru", "variant": "default", "task": "mqar",
                               "task_version": 1, "preset": "smoke", "seed": seed, "status": Status.OK,
                               "accuracy": accuracy, "config_json": json.dumps(config), "config_hash": run_id},
                     [{"step": 4.0, "loss": 1.0, "accuracy": accuracy}])


def _bench_row(bench_id="b1"):
    return {"bench_id": bench_id, "model": "gru", "variant": "default", "preset": "default", "mode": "train",
            "seq_len": 512, "batch_size": 4, "status": Status.OK, "tokens_per_sec": 1000.0,
            "device": "cpu (1 threads)"}


def _plant_bad_files(results):
    """In runs/: a bench row (another schema), a row whose accuracy is a string, one without a status,
    and bytes that are no Parquet at all. In curves/ and bench/: a file with a wrong-typed column."""
    os.replace(write_bench_row(results / "elsewhere", _bench_row("foreign")), results / "runs" / "other-schema.parquet")
    good = pq.read_table(results / "runs" / "good.parquet").to_pylist()[0]
    bad_type = pa.Table.from_pylist([{**good, "run_id": "badtype", "config_hash": "badtype",
                                      "accuracy": "0.99"}])
    pq.write_table(bad_type, results / "runs" / "badtype.parquet")
    (results / "runs" / "garbage.parquet").write_bytes(b"not parquet at all")
    pq.write_table(pa.Table.from_pylist([{**good, "run_id": "nostatus", "status": None}],
                                        schema=pq.read_schema(results / "runs" / "good.parquet")),
                   results / "runs" / "nostatus.parquet")
    pq.write_table(pa.Table.from_pylist([{"run_id": "x", "step": "four"}]), results / "curves" / "x.parquet")
    pq.write_table(pa.Table.from_pylist([{**_bench_row("b2"), "seq_len": "512"}]),
                   results / "bench" / "b2.parquet")


@pytest.fixture
def mixed(tmp_path):
    _run(tmp_path, "good")
    write_bench_row(tmp_path, _bench_row())
    _plant_bad_files(tmp_path)
    return tmp_path


def test_readers_skip_and_name_every_file_they_cannot_use(mixed):
    skipped = []
    runs = read_runs(mixed, on_unreadable=lambda path, exc: skipped.append((path.name, str(exc))))
    assert runs.column("run_id").to_pylist() == ["good"]
    assert runs.schema.field("accuracy").type == pa.float64()
    reasons = dict(skipped)
    assert set(reasons) == {"other-schema.parquet", "badtype.parquet", "garbage.parquet", "nostatus.parquet"}
    assert "no column run_id" in reasons["other-schema.parquet"]
    assert "'accuracy' is string, expected double" in reasons["badtype.parquet"]
    assert "'status' has nulls" in reasons["nostatus.parquet"]
    curve_skips, bench_skips = [], []
    assert read_curves(mixed, on_unreadable=lambda p, e: curve_skips.append(p.name)).column("run_id").to_pylist() \
        == ["good"]
    assert curve_skips == ["x.parquet"]
    bench = read_bench(mixed, on_unreadable=lambda p, e: bench_skips.append(p.name))
    assert bench.column("bench_id").to_pylist() == ["b1"] and bench_skips == ["b2.parquet"]
    with pytest.warns(UserWarning) as warned:
        read_runs(mixed)
    assert sorted(str(w.message).split(": ")[0].rsplit("/", 1)[1] for w in warned) == sorted(reasons)


def test_leaderboard_report_and_plot_warn_by_name_and_go_on(cli, mixed):
    code, out, err = cli("leaderboard", "--results", mixed)
    assert code == 0 and "gru" in out
    for name in ("other-schema.parquet", "badtype.parquet", "garbage.parquet", "nostatus.parquet"):
        assert name in err
    code, out, err = cli("report", "--results", mixed, "--out", mixed / "report.md")
    assert code == 0 and "badtype.parquet" in err and "b2.parquet" in err
    code, out, err = cli("plot", "--results", mixed, "--out", mixed / "plots")
    assert code == 0 and "badtype.parquet" in err and "x.parquet" in err and "b2.parquet" in err


def test_sweep_resume_counts_only_readable_rows(registries, mixed):
    from seqbench.sweeps.sweep import SweepSpec, expand, pending

    cells = expand(registries, SweepSpec(models=("gru",), tasks=("mqar",), seeds=(0, 1), preset="smoke"))
    # the good row stands for cell 0 (its config hash), the unreadable badtype row for cell 1
    os.replace(mixed / "runs" / "good.parquet", mixed / "runs" / "cell0.parquet")
    table = pq.read_table(mixed / "runs" / "cell0.parquet").to_pylist()[0]
    pq.write_table(pa.Table.from_pylist([{**table, "config_hash": cells[0].key}], schema=pq.read_schema(
        mixed / "runs" / "cell0.parquet")), mixed / "runs" / "cell0.parquet")
    skipped = []
    todo = pending(cells, mixed, on_unreadable=lambda p, e: skipped.append(p.name))
    assert [c.key for c in todo] == [cells[1].key]
    assert "badtype.parquet" in skipped


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    runs = tmp_path / "runs"
    _run(tmp_path, "first")
    dead = subprocess.Popen(["true"])
    dead.wait()
    from seqbench.results import _HOST

    of_dead = runs / f".tmp-{_HOST}-{dead.pid}-abc123.parquet"
    of_live = runs / f".tmp-{_HOST}-{os.getpid()}-def456.parquet"  # a write in flight in this process
    of_other_host = runs / f".tmp-elsewhere-{dead.pid}-ghi789.parquet"  # its pid means nothing here
    old_style = runs / ".tmp-jkl012.parquet"
    for path in (of_dead, of_live, of_other_host, old_style):
        path.write_bytes(b"")
    assert is_stale_temp(of_dead) and not is_stale_temp(of_live)
    assert not is_stale_temp(of_other_host) and not is_stale_temp(old_style)
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old_style, (long_ago, long_ago))
    os.utime(of_other_host, (long_ago, long_ago))
    _run(tmp_path, "second")  # a write cleans its folder
    assert sorted(p.name for p in runs.iterdir()) == sorted([of_live.name, "first.parquet", "second.parquet"])
    of_dead.write_bytes(b"")
    assert read_runs(tmp_path).num_rows == 2 and not of_dead.exists()  # so does a read
    assert remove_stale_temps(runs) == [] and of_live.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_are_created_with_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        assert current_umask() == umask
        run_path = _run(tmp_path, "r")
        bench_path = write_bench_row(tmp_path, _bench_row())
    finally:
        os.umask(before)
    for path in (run_path, tmp_path / "curves" / "r.parquet", bench_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_bench_rows_round_trip_with_the_declared_schema(tmp_path):
    write_bench_row(tmp_path, _bench_row())
    assert read_bench(tmp_path).schema.names == BENCH_SCHEMA.names
