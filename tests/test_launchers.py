"""Launchers: a 4-cell smoke grid through each (local processes, Ray, submitit's local executor), launched
twice on one folder; a cell another worker holds is skipped; missing extras name the extra."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from seqbench.results import read_runs
from seqbench.sweeps.claims_lock import claim_path

GRID = ("--models", "gru,transformer", "--tasks", "mqar", "--seeds", "0,1", "--preset", "smoke",
        "--device", "cpu", "--set", "model.d_model=8", "--set", "train.max_steps=2", "--set", "train.eval_every=2",
        "--set", "task.num_test=32")


def _hashes(results: Path) -> list[str]:
    table = read_runs(results, columns=["config_hash", "status"])
    assert table is not None and set(table.column("status").to_pylist()) == {"ok"}
    return table.column("config_hash").to_pylist()


def _grid_keys() -> list[str]:
    from seqbench.registry import build_registries
    from seqbench.sweeps.sweep import SweepSpec, expand

    sets = tuple(GRID[i + 1] for i, flag in enumerate(GRID) if flag == "--set")
    spec = SweepSpec(models=("gru", "transformer"), tasks=("mqar",), seeds=(0, 1), preset="smoke", sets=sets)
    return [cell.key for cell in expand(build_registries(), spec)]


def _launch_twice(cli, results: Path, *launcher: str) -> str:
    """Launch the grid with one cell held by a live worker elsewhere, then again once it is free."""
    keys = _grid_keys()
    assert len(keys) == 4
    held = claim_path(results, keys[0])
    held.parent.mkdir(parents=True, exist_ok=True)
    held.write_text(f'{{"host": "{socket.gethostname()}", "pid": {os.getpid()}, '
                    '"started_at": "2026-01-01T00:00:00+00:00", "token": "busy"}')
    code, out, err = cli("sweep", *GRID, "--results", results, *launcher)
    assert code == 0, out + err
    assert "3 ok" in out and "1 claimed" in out and f"pid {os.getpid()}" in out
    assert sorted(_hashes(results)) == sorted(keys[1:])  # the held cell did not run
    held.unlink()
    code, out, err = cli("sweep", *GRID, "--results", results, *launcher)
    assert code == 0, out + err
    assert "3 already done, 1 to run" in " ".join(out.split()) and "1 ok" in out
    hashes = _hashes(results)
    assert sorted(hashes) == sorted(keys) and len(set(hashes)) == 4  # each cell once
    assert not list((results / "claims").glob("*.json"))  # every claim released
    return out


def test_local_launcher_runs_cells_in_worker_processes(cli, tmp_path):
    out = _launch_twice(cli, tmp_path / "results", "--launcher", "local", "--jobs", "2")
    assert "(eta " in out  # plain progress lines outside a terminal


def test_ray_launcher_on_a_local_instance(cli, tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _launch_twice(cli, tmp_path / "results", "--launcher", "ray", "--cpus-per-cell", "1")
    finally:
        ray.shutdown()


def test_slurm_launcher_through_submitits_local_executor(cli, tmp_path):
    results = tmp_path / "results"
    _launch_twice(cli, results, "--launcher", "slurm", "--slurm-cluster", "local", "--slurm-time", "0:10:00",
                  "--slurm-partition", "cpu")
    assert list((results / "slurm").glob("*/*.out"))  # submitit's per-job logs


@pytest.mark.parametrize(("launcher", "module", "extra"), [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_a_missing_extra_names_it(cli, tmp_path, monkeypatch, launcher, module, extra):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    code, _, err = cli("sweep", *GRID, "--results", tmp_path, "--launcher", launcher)
    assert code == 2 and f"pip install 'seqbench[{extra}]'" in err
    assert not tmp_path.joinpath("runs").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (("--jobs", "0"), "--jobs must be >= 1"),
    (("--launcher", "slurm", "--slurm-array-parallelism", "0"), "--slurm-array-parallelism must be >= 1"),
    (("--launcher", "slurm", "--gpus-per-cell", "0.5"), "whole number under slurm"),
    (("--launcher", "slurm", "--slurm-time", "soon"), "bad --slurm-time"),
    (("--claim-timeout", "0"), "--claim-timeout must be > 0"),
])
def test_bad_launcher_settings_are_user_errors(cli, tmp_path, flags, message):
    code, _, err = cli("sweep", *GRID, "--results", tmp_path, *flags)
    assert code == 2 and message in " ".join(err.split())
    assert not tmp_path.joinpath("runs").exists()
