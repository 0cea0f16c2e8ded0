"""Faults a run survives: SIGTERM and SIGINT (pre-emption, ``timeout``, Ctrl-C), damaged checkpoints, a
dead sweep parent, a full disk, swapped cache entries. Signals and orphans go through real processes."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pyarrow.parquet as pq
import pytest

from seqbench.cli import main
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import RunInterrupted
from seqbench.process import pid_running, watching
from seqbench.sweeps.sweep import run_cell
from seqbench.train import checkpoints
from seqbench.train.checkpoints import WallClock, checkpoint_dir, checkpoint_run_id, latest_checkpoint
from seqbench.train.runner import run

RESULT = ("accuracy", "loss", "gate_rate", "accuracy_hard", "gate_rate_hard", "lambda", "steps")
SMOKE_GRU = ("--model", "gru", "--task", "mqar", "--preset", "smoke", "--no-progress")


def _rows(results: Path) -> list[dict]:
    return [pq.read_table(p).to_pylist()[0] for p in sorted((results / "runs").glob("*.parquet"))]


def _same_result(a: dict, b: dict) -> None:
    assert {k: a[k] for k in RESULT} == {k: b[k] for k in RESULT}


class _SignalAt(L.Callback):
    """Sends this process ``signum`` when ``step`` optimizer steps are done (as SLURM or a user would)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.fixture(scope="module")
def tgn_config(registries):
    return resolve_run_config(registries, "tgn", "mqar", preset="smoke", overrides=["train.max_steps=12"])


@pytest.fixture(scope="module")
def whole_run(registries, tgn_config, tmp_path_factory):
    # every run compared with this one pins one thread too: the thread policy follows the machine's
    # load, and a float32 sum split over another number of threads rounds differently
    return run(registries, tgn_config, RunOptions(results_dir=tmp_path_factory.mktemp("whole"), progress=False,
                                                  threads=1))


# ------------------------------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_writes_no_row_and_the_resumed_run_matches(registries, tgn_config, whole_run,
                                                                               tmp_path, signum):
    options = RunOptions(results_dir=tmp_path, progress=False, checkpoint_every=4, keep_checkpoints=2, threads=1)
    with watching(), pytest.raises(RunInterrupted) as info:
        run(registries, tgn_config, dataclasses.replace(options, callbacks=(_SignalAt(6, signum),)))
    stopped = info.value
    assert stopped.exit_code == 128 + signum and stopped.steps == 6
    folder = checkpoint_dir(tmp_path, tgn_config.config_hash())
    assert stopped.checkpoint == str(folder / "step=6.ckpt")  # saved at the signal, not only the periodic step=4
    assert "--resume" in stopped.describe() and "step=6.ckpt" in stopped.describe()
    assert not (tmp_path / "runs").exists()  # no row: never an ok row for an unfinished run
    import torch

    saved = torch.load(folder / "step=6.ckpt", weights_only=False)["callbacks"]
    (first_segment,) = [state["seconds"] for key, state in saved.items() if "WallClock" in key]
    row = run(registries, tgn_config, dataclasses.replace(options, resume=True))
    assert row["status"] == "ok"
    _same_result(row, whole_run)
    assert first_segment > 0 and row["wall_time_s"] > first_segment  # the row counts the first segment too


@pytest.mark.parametrize("stop", ["signal at 5", "signal at 6", "signal at 8", "crash at 10"])
def test_a_run_with_dropout_resumes_to_the_same_curve_and_result(registries, tmp_path, stop):
    """Dropout draws from the global RNG, which the checkpoint restores; a data loader drawing from it too
    (its workers' base seed, at every iteration) would shift every mask after a validation pass or a resume.
    At step 8 an evaluation follows the step: the checkpoint saved there (at the signal; the periodic one
    the crash at 10 resumes from) must hold it, or the resumed curve would lack that point."""
    config = resolve_run_config(registries, "transformer", "mqar", preset="smoke",
                                overrides=["train.max_steps=24", "train.eval_every=4", "model.dropout=0.1"])
    whole = run(registries, config, RunOptions(results_dir=tmp_path / "whole", progress=False, threads=1))
    options = RunOptions(results_dir=tmp_path / "cut", progress=False, checkpoint_every=4, keep_checkpoints=2,
                         threads=1)
    how, _, at = stop.partition(" at ")
    if how == "signal":
        with watching(), pytest.raises(RunInterrupted):
            run(registries, config, dataclasses.replace(options, callbacks=(_SignalAt(int(at), signal.SIGTERM),)))
    else:
        with pytest.raises(RuntimeError, match="crash for the test"):
            run(registries, config, dataclasses.replace(options, callbacks=(_Crash(int(at)),)))
        assert latest_checkpoint(checkpoint_dir(tmp_path / "cut", config.config_hash())).name == "step=8.ckpt"
    row = run(registries, config, dataclasses.replace(options, resume=True))
    assert [row[k] for k in ("accuracy", "loss", "steps")] == [whole[k] for k in ("accuracy", "loss", "steps")]

    def curve(results: Path, run_id: str) -> list[dict]:
        return [{k: v for k, v in p.items() if k != "run_id"}
                for p in pq.read_table(results / "curves" / f"{run_id}.parquet").to_pylist()]

    assert curve(tmp_path / "cut", row["run_id"]) == curve(tmp_path / "whole", whole["run_id"])


def test_a_resumed_runs_wall_time_counts_every_segment_and_not_the_pause(monkeypatch):
    """The checkpoint records the seconds spent so far; the resumed segment adds its own to them. Without
    it a run interrupted once would report only its last segment, and the rows' cost would undercount it."""
    now = [100.0]
    monkeypatch.setattr(checkpoints.time, "perf_counter", lambda: now[0])
    first = WallClock(started=now[0])
    now[0] += 30.0
    state = first.state_dict()
    assert state == {"seconds": 30.0}
    now[0] += 1000.0  # the run lies interrupted: not its cost
    second = WallClock(started=now[0])
    second.load_state_dict(state)
    now[0] += 12.0
    assert second.seconds() == 42.0


def test_sigterm_through_the_python_api_without_a_handler_is_still_no_ok_row(registries, tgn_config, tmp_path):
    """Without seqbench's handler Lightning's own SIGTERMException (a SystemExit with code 0) stops fit:
    it comes out as RunInterrupted, not as an exit 0."""
    options = RunOptions(results_dir=tmp_path, progress=False, checkpoint_every=4,
                         callbacks=(_SignalAt(6, signal.SIGTERM),))
    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # Lightning composes with it; it must not kill pytest
    try:
        with pytest.raises(RunInterrupted) as info:
            run(registries, tgn_config, options)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert info.value.signum == signal.SIGTERM and info.value.steps == 6
    assert not (tmp_path / "runs").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqbench.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.fixture
def spawn():
    """``subprocess.Popen`` for a test, whose process tree is killed at teardown if still running: a
    test that fails while waiting on it must not leave a sweep and its workers training for ever."""
    started: list[subprocess.Popen] = []

    def popen(*args, **kwargs) -> subprocess.Popen:
        started.append(subprocess.Popen(*args, **kwargs))
        return started[-1]

    yield popen
    for proc in started:
        for pid in (_descendants(proc.pid) | {proc.pid}) if proc.poll() is None else set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=30)


def _wait_for(condition, proc: subprocess.Popen, what: str, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s  # a guard against a hang, not a timing assertion
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {limit_s} s"
        time.sleep(0.05)


def _checkpoints(results: Path) -> list[Path]:
    return sorted((results / "checkpoints").glob("*/step=*.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_run_ends_with_the_signals_exit_code_and_one_line(tmp_path, signum, code, spawn):
    proc = spawn(_cli("run", *SMOKE_GRU, "--max-steps", "100000", "--checkpoint-every", "5",
                                 "--results", str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    _wait_for(lambda: _checkpoints(tmp_path), proc, "a checkpoint")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(signum).name}" in lines[0], err
    assert "Traceback" not in out + err
    assert not list((tmp_path / "runs").glob("*.parquet")) if (tmp_path / "runs").exists() else True


@pytest.mark.slow
def test_a_sigtermed_sweep_releases_its_claims_and_a_relaunch_finishes_it(tmp_path, capsys, spawn):
    sweep = ("sweep", "--models", "gru", "--tasks", "mqar", "--seeds", "0,1,2", "--preset", "smoke",
             "--max-steps", "150", "--checkpoint-every", "5", "--results", str(tmp_path))
    proc = spawn(_cli(*sweep, "--jobs", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    _wait_for(lambda: len({p.parent for p in _checkpoints(tmp_path)}) == 2, proc, "two cells checkpointed")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in out + err
    assert not (tmp_path / "claims").exists() or not list((tmp_path / "claims").iterdir())
    assert len(_rows(tmp_path)) < 3  # the sweep did not go on to finish its cells
    code = main([*sweep])
    capsys.readouterr()
    assert code == 0
    rows = _rows(tmp_path)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"} and {r["seed"] for r in rows} == {0, 1, 2}


# ------------------------------------------------------------------------------------------- orphans


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_kill_9_of_a_sweep_leaves_no_worker_behind(tmp_path, spawn):
    proc = spawn(_cli("sweep", "--models", "gru", "--tasks", "mqar", "--seeds", "0,1", "--preset",
                                 "smoke", "--max-steps", "100000", "--jobs", "2", "--results", str(tmp_path)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    claims = tmp_path / "claims"
    _wait_for(lambda: claims.is_dir() and len(list(claims.glob("*.json"))) == 2, proc, "two running cells")
    workers = {json.loads(p.read_text())["pid"] for p in claims.glob("*.json")}
    family = _descendants(proc.pid)
    assert workers <= family and len(workers) == 2
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while any(pid_running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in family if pid_running(pid)], "processes outlived the sweep"
    assert not list(claims.glob("*.json"))  # each worker let go of its cell on the way out


# ------------------------------------------------------------------------------------------- checkpoints


class _Crash(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("crash for the test")


@pytest.mark.parametrize("how", ["run --resume", "sweep cell"])
def test_a_truncated_newest_checkpoint_is_skipped_for_the_older_one(registries, tgn_config, whole_run, tmp_path,
                                                                    how):
    options = RunOptions(results_dir=tmp_path, progress=False, checkpoint_every=4, keep_checkpoints=2, threads=1)
    with pytest.raises(RuntimeError, match="crash for the test"):
        run(registries, tgn_config, dataclasses.replace(options, callbacks=(_Crash(9),)))
    folder = checkpoint_dir(tmp_path, tgn_config.config_hash())
    newest = folder / "step=8.ckpt"
    run_id = checkpoint_run_id(newest)
    newest.write_bytes(newest.read_bytes()[:1000])  # a full disk, or a copy cut short
    with pytest.warns(UserWarning, match="step=8.ckpt does not load"):
        if how == "run --resume":
            row = run(registries, tgn_config, dataclasses.replace(options, resume=True))
        else:
            row = run_cell(registries, tgn_config, options)
    assert row["status"] == "ok" and row["run_id"] == run_id
    _same_result(row, whole_run)


def test_no_loadable_checkpoint_means_nothing_to_resume(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "step=4.ckpt").write_bytes(b"")
    with pytest.warns(UserWarning, match="step=4.ckpt does not load"):
        assert latest_checkpoint(folder) is None


# ------------------------------------------------------------------------------------------- full disk


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")] + [p for p in root.rglob("*.tmp")]


def _disk_full_under(folder: str, monkeypatch) -> None:
    """pyarrow's writer raises ENOSPC for files under ``<results>/<folder>/`` (the row, after training)."""
    real = pq.write_table

    def write_table(table, where, *args, **kwargs):
        if f"/{folder}/" in str(where):
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)


def test_a_full_disk_after_training_is_one_line_and_exit_1(cli, tmp_path, monkeypatch):
    _disk_full_under("runs", monkeypatch)
    code, out, err = cli("run", *SMOKE_GRU, "--max-steps", "4", "--results", tmp_path)
    assert code == 1 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and "disk full" in err
    assert not list((tmp_path / "runs").glob("*")) and not _temps(tmp_path)


def test_a_full_disk_stops_a_sweep_with_no_claim_or_temp_file_left(cli, tmp_path, monkeypatch):
    _disk_full_under("runs", monkeypatch)
    code, out, err = cli("sweep", "--models", "gru", "--tasks", "mqar", "--seeds", "0,1", "--preset", "smoke",
                         "--max-steps", "4", "--results", tmp_path)
    assert code == 1 and "disk full" in err and "Traceback" not in out + err
    assert not (tmp_path / "claims").exists() or not list((tmp_path / "claims").iterdir())
    assert not list((tmp_path / "runs").glob("*")) and not _temps(tmp_path)  # no failed row for a full disk


def test_a_claim_that_cannot_be_written_is_removed(tmp_path, monkeypatch):
    from seqbench.sweeps import claims_lock

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(claims_lock.json, "dump", full)
    with pytest.raises(OSError):
        claims_lock.try_claim(tmp_path, "cell")
    assert not claims_lock.claim_path(tmp_path, "cell").exists()  # an empty claim would block the cell


# ------------------------------------------------------------------------------------------- cache


def test_a_cache_entry_copied_over_another_splits_is_regenerated(registries):
    from seqbench.train.data import build_task_data

    spec = registries.tasks.get("mqar")
    config = resolve_run_config(registries, "gru", "mqar", preset="smoke").task_config
    first = build_task_data(spec, config, seed=0, batch_size=8)
    first.setup()
    test_path = first.cache_path("test")
    test_path.write_bytes(first.cache_path("val").read_bytes())  # a valid entry, of the other split
    again = build_task_data(spec, config, seed=0, batch_size=8)
    with pytest.warns(UserWarning, match="holds other data than asked for .*split 'val' not 'test'"):
        data = again.split_data("test")
    assert all((data[k] == first.splits["test"][k]).all() for k in ("tokens", "targets"))
    other_seed = build_task_data(spec, config, seed=1, batch_size=8)
    other_seed.cache_path("train").parent.mkdir(parents=True, exist_ok=True)
    other_seed.cache_path("train").write_bytes(first.cache_path("train").read_bytes())
    with pytest.warns(UserWarning, match="seed 0 not 1"):
        assert not (other_seed.split_data("train")["tokens"] == first.splits["train"]["tokens"]).all()


# ------------------------------------------------------------------------------------------- readers


def test_every_reader_skips_a_row_whose_config_json_does_not_parse(cli, tmp_path):
    import datetime as dt

    from seqbench.results import write_run

    base = {"model": "gru", "variant": "default", "task": "mqar", "task_version": 1, "preset": "smoke",
            "status": "ok", "accuracy": 0.5, "loss": 1.0, "started_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    write_run(tmp_path, {**base, "run_id": "bad", "seed": 0, "config_hash": "1" * 16, "config_json": "{not json"},
              [{"step": 1.0, "loss": 1.0}])
    write_run(tmp_path, {**base, "run_id": "good", "seed": 1, "config_hash": "2" * 16,
                         "config_json": json.dumps({"train": {"lr": 0.1}})}, [{"step": 1.0, "loss": 1.0}])
    for fmt in ("table", "markdown", "csv", "json"):
        code, out, err = cli("leaderboard", "--results", tmp_path, "--format", fmt)
        assert code == 0 and "Traceback" not in out + err, err
        assert "bad.parquet" in err and "config_json" in err
    code, out, err = cli("plot", "--results", tmp_path, "--out", tmp_path / "plots")
    assert code == 0 and "Traceback" not in out + err and "bad.parquet" in err
    code, out, err = cli("report", "--results", tmp_path, "--preset", "smoke", "--out", tmp_path / "r.md")
    assert "Traceback" not in out + err and "bad.parquet" in err


def test_a_cache_write_on_a_full_disk_leaves_no_temp_file(registries, monkeypatch):
    import torch

    from seqbench.train.data import build_task_data, cache_dir

    def full(obj, where, *args, **kwargs):
        Path(where).write_bytes(b"half")  # what a write cut short leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    config = resolve_run_config(registries, "gru", "mqar", preset="smoke", overrides=["task.num_train=72"]).task_config
    data = build_task_data(registries.tasks.get("mqar"), config, seed=3, batch_size=8)
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        data.split_data("train")
    assert not _temps(cache_dir()) and not data.cache_path("train").exists()
