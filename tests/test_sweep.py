"""seqbench sweep: grid expansion, shards that partition it, resume (also after kill -9), failed cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_plugins import FakeModels

from seqbench.configure.options import RunOptions
from seqbench.errors import UserError
from seqbench.registry import build_registries
from seqbench.results import read_runs
from seqbench.sweeps.sweep import SweepSpec, expand, parse_shard, pending, run_sweep, shard

TINY = ("train.max_steps=2", "train.eval_every=2", "task.num_test=32")


def _rows(results: Path) -> list[dict]:
    table = read_runs(results)
    return [] if table is None else table.to_pylist()


def test_grid_is_the_product_of_its_axes(registries):
    spec = SweepSpec(models=("transformer", "gru"), tasks=("mqar",), seeds=(0, 1, 2), preset="smoke",
                     grid=("task.seq_len=32,48", "model.d_model=8,16"))
    cells = expand(registries, spec)
    assert len(cells) == 2 * 3 * 2 * 2
    assert len({c.key for c in cells}) == len(cells)  # distinct configs, distinct hashes
    assert {(c.config.model, c.config.task_config.seq_len, c.config.model_config.d_model, c.config.seed)
            for c in cells} == {(m, L, d, s) for m in ("transformer", "gru") for L in (32, 48) for d in (8, 16)
                                for s in (0, 1, 2)}
    assert [c.index for c in cells] == list(range(len(cells)))
    assert [c.key for c in expand(registries, spec)] == [c.key for c in cells]  # deterministic order


@pytest.mark.parametrize("count", [1, 2, 3, 5, 24, 30])
def test_shards_partition_the_grid(registries, count):
    cells = expand(registries, SweepSpec(models=("transformer", "gru"), tasks=("mqar",), seeds=(0, 1, 2),
                                         preset="smoke", grid=("task.seq_len=32,48,64", "train.lr=0.001,0.003")))
    parts = [shard(cells, i, count) for i in range(count)]
    keys = [c.key for part in parts for c in part]
    assert sorted(keys) == sorted(c.key for c in cells) and len(keys) == len(set(keys))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["1/1", "-1/2", "2", "a/b", "0/0"])
def test_bad_shard_is_a_user_error(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)


def test_bad_grid_and_variants_are_user_errors(registries):
    with pytest.raises(UserError, match="unknown key task.nope"):
        expand(registries, SweepSpec(models=("gru",), tasks=("mqar",), grid=("task.nope=1,2",), preset="smoke"))
    with pytest.raises(UserError, match="--grid"):
        expand(registries, SweepSpec(models=("gru",), tasks=("mqar",), grid=("task.seq_len",), preset="smoke"))
    with pytest.raises(UserError, match="variant"):
        expand(registries, SweepSpec(models=("gru",), tasks=("mqar",), variants=("chunked",), preset="smoke"))


def test_sweep_runs_missing_cells_only_and_records_failures(tmp_path):
    registries = build_registries(extra_plugins=(FakeModels(),))
    spec = SweepSpec(models=("gru", "fake_plain"), tasks=("mqar",), seeds=(0, 1), preset="smoke",
                     sets=(*TINY, "model.d_model=8"))
    cells = expand(registries, spec)
    failing = [c for c in cells if c.config.model == "fake_plain"][0]
    options = RunOptions(results_dir=tmp_path, device="cpu", progress=False)
    # one failing cell first: the sweep must go on to the others
    bad = expand(registries, SweepSpec(models=("fake_plain",), tasks=("mqar",), seeds=(0,), preset="smoke",
                                       sets=(*TINY, "model.d_model=8", "model.fail_above=8",
                                             "model.failure=runtime")))
    rows = run_sweep(registries, bad + [c for c in cells if c.config.model == "gru"][:1], options)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "fake model bug" in rows[0]["error"]
    stored = {r["config_hash"]: r for r in _rows(tmp_path)}
    assert stored[bad[0].key]["status"] == "failed" and "fake model bug" in stored[bad[0].key]["error"]
    assert stored[bad[0].key]["config_json"] == bad[0].config.to_json()

    todo = pending(cells, tmp_path)
    assert len(todo) == len(cells) - 1 and failing in todo
    run_sweep(registries, todo, options)
    assert pending(cells, tmp_path) == []
    hashes = [r["config_hash"] for r in _rows(tmp_path)]
    assert sorted(hashes) == sorted([c.key for c in cells] + [bad[0].key])  # no duplicates


def test_dry_run_lists_cells_and_runs_nothing(cli, tmp_path):
    code, out, _ = cli("sweep", "--models", "gru,transformer", "--tasks", "mqar", "--seeds", "0,1",
                       "--preset", "smoke", "--shard", "1/2", "--dry-run", "--results", tmp_path)
    assert code == 0 and "4 cells in the grid, 2 in shard 1/2" in " ".join(out.split())
    assert out.count("│ to run") == 2 and not (tmp_path / "runs").exists()


def test_resume_after_kill_9(tmp_path):
    """SIGKILL a sweep after its first row, re-run it: exactly the grid's rows, each readable, none twice."""
    results = tmp_path / "results"
    argv = ["sweep", "--models", "gru,transformer", "--tasks", "mqar", "--seeds", "0,1", "--preset", "smoke",
            "--results", str(results), "--device", "cpu", *[a for s in TINY for a in ("--set", s)],
            "--set", "model.d_model=8"]
    proc = subprocess.Popen([sys.executable, "-m", "seqbench.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "SEQBENCH_CACHE_DIR": "off"})
    deadline = time.monotonic() + 300
    while not list((results / "runs").glob("[!.]*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep wrote no row in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(list((results / "runs").glob("[!.]*.parquet")))
    assert 1 <= first < 4

    from seqbench.cli import main

    assert main(argv) == 0
    files = list((results / "runs").glob("[!.]*.parquet"))
    rows = [pq.read_table(f).to_pylist()[0] for f in files]  # every file is a complete row
    registries = build_registries()
    grid = expand(registries, SweepSpec(models=("gru", "transformer"), tasks=("mqar",), seeds=(0, 1),
                                        preset="smoke", sets=(*TINY, "model.d_model=8")))
    assert sorted(r["config_hash"] for r in rows) == sorted(c.key for c in grid)
    assert all(r["status"] == "ok" for r in rows)
    assert main(argv) == 0 and len(list((results / "runs").glob("[!.]*.parquet"))) == 4  # finished: no-op


def test_retry_failed_replaces_the_failed_row(tmp_path):
    from seqbench.sweeps.sweep import _remove_failed

    registries = build_registries(extra_plugins=(FakeModels(),))
    sets = (*TINY, "model.d_model=8", "model.fail_above=8", "model.failure=runtime")
    cells = expand(registries, SweepSpec(models=("fake_plain",), tasks=("mqar",), preset="smoke", sets=sets))
    run_sweep(registries, cells, RunOptions(results_dir=tmp_path, device="cpu", progress=False))
    assert pending(cells, tmp_path) == [] and pending(cells, tmp_path, retry_failed=True) == cells
    assert _remove_failed(tmp_path, {c.key for c in cells}) == 1 and _rows(tmp_path) == []


def test_a_run_leaves_torchs_deterministic_flag_as_it_found_it(registries, tmp_path):
    import torch

    cells = expand(registries, SweepSpec(models=("gru",), tasks=("mqar",), preset="smoke",
                                         sets=(*TINY, "model.d_model=8")))
    assert not torch.are_deterministic_algorithms_enabled()
    rows = run_sweep(registries, cells, RunOptions(results_dir=tmp_path, device="cpu", progress=False))
    assert rows[0]["status"] == "ok" and not torch.are_deterministic_algorithms_enabled()


def test_four_concurrent_unsharded_sweeps_run_each_cell_once(tmp_path):
    """Four sweeps of the same 8 cells on one folder at once: each cell claimed and run by exactly one."""
    results = tmp_path / "results"
    argv = ["sweep", "--models", "gru,transformer", "--tasks", "mqar", "--seeds", "0,1,2,3", "--preset", "smoke",
            "--results", str(results), "--device", "cpu", *[a for s in TINY for a in ("--set", s)],
            "--set", "model.d_model=8"]
    procs = [subprocess.Popen([sys.executable, "-m", "seqbench.cli", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    hashes = [r["config_hash"] for r in _rows(results)]
    assert len(hashes) == 8 and len(set(hashes)) == 8
    ran = sum(out.count("] ok ") for out in outputs)
    assert ran == 8  # the other launches' cells were reported claimed or done, not run
    assert not list((results / "claims").glob("*.json"))
