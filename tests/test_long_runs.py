"""Long runs: checkpoints and exact resume, live curves, loggers, progress lines, saved models, threads."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pyarrow.parquet as pq
import pytest

from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.sweeps.sweep import run_cell
from seqbench.train.checkpoints import checkpoint_dir, checkpoint_run_id, latest_checkpoint
from seqbench.train.progress import RunProgress
from seqbench.train.runner import run

SMOKE = ("--model", "tgn", "--task", "mqar", "--preset", "smoke", "--no-progress")
# everything that must come out the same when a run is resumed (wall time, tokens/s and run ids may not)
RESULT = ("accuracy", "loss", "gate_rate", "accuracy_hard", "gate_rate_hard", "lambda", "steps")


def _only_row(results: Path) -> dict:
    files = sorted((results / "runs").glob("*.parquet"))
    assert len(files) == 1, files
    return pq.read_table(files[0]).to_pylist()[0]


def _curve(results: Path, run_id: str) -> list[dict]:
    return pq.read_table(results / "curves" / f"{run_id}.parquet").to_pylist()


def _same_result(a: dict, b: dict) -> None:
    assert {k: a[k] for k in RESULT} == {k: b[k] for k in RESULT}


class _Crash(L.Callback):
    """Stops a run with an exception once ``step`` optimizer steps are done (after that step's checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("crash for the test")


def test_a_run_killed_with_sigkill_resumes_to_the_same_metrics(cli, tmp_path):
    # 55 steps after the first checkpoint: the poll below (every 20 ms) kills the run long before its end.
    # One pinned thread: the thread policy follows the machine's load, and a float32 sum split over a
    # different number of threads rounds differently (CI saw lambda differ in its 7th digit)
    steps = ("--max-steps", "60", "--checkpoint-every", "5", "--threads", "1")
    code, out, _ = cli("run", *SMOKE, *steps, "--results", tmp_path / "whole")
    assert code == 0, out
    whole = _only_row(tmp_path / "whole")

    killed = tmp_path / "killed"
    folder = checkpoint_dir(killed, whole["config_hash"])
    proc = subprocess.Popen([sys.executable, "-m", "seqbench.cli", "run", *SMOKE, *steps, "--results", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a timing assertion
        while latest_checkpoint(folder) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed mid-training"
        os.kill(proc.pid, signal.SIGKILL)
        assert latest_checkpoint(folder) is not None
    finally:
        proc.wait()
    assert not (killed / "runs").exists() or not list((killed / "runs").glob("*.parquet"))  # no row: not finished
    run_id = checkpoint_run_id(latest_checkpoint(folder))
    assert run_id and _curve(killed, run_id)  # the live curve of the killed run is on disk

    code, out, _ = cli("run", *SMOKE, *steps, "--results", killed, "--resume")
    assert code == 0, out
    resumed = _only_row(killed)
    assert resumed["run_id"] == run_id  # the same run, continued
    _same_result(resumed, whole)
    assert _curve(killed, run_id) == [{**p, "run_id": run_id} for p in _curve(tmp_path / "whole", whole["run_id"])]
    assert not folder.exists()  # a finished run's checkpoints are removed: its row is the result


def test_a_sweep_cell_resumes_from_its_checkpoint(registries, tmp_path):
    config = resolve_run_config(registries, "tgn", "mqar", preset="smoke", overrides=["train.max_steps=12"])
    # one pinned thread on both sides, for bit-equal sums (see the SIGKILL test above)
    whole = run(registries, config, RunOptions(results_dir=tmp_path / "whole", progress=False, threads=1))
    options = RunOptions(results_dir=tmp_path / "cut", progress=False, checkpoint_every=4, keep_checkpoints=1,
                         threads=1)
    with pytest.raises(RuntimeError, match="crash for the test"):
        run(registries, config, dataclasses.replace(options, callbacks=(_Crash(6),)))
    folder = checkpoint_dir(tmp_path / "cut", config.config_hash())
    assert [p.name for p in folder.iterdir()] == ["step=4.ckpt"]  # only the latest kept
    run_id = checkpoint_run_id(folder / "step=4.ckpt")
    row = run_cell(registries, config, options)
    assert row["status"] == "ok" and row["run_id"] == run_id
    _same_result(row, whole)


def test_resume_without_a_checkpoint_is_a_user_error(cli, tmp_path):
    code, _, err = cli("run", *SMOKE, "--results", tmp_path, "--resume")
    assert code == 2 and "no checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_csv_and_tensorboard_logs_read_back(cli, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, _ = cli("run", *SMOKE, "--logger", "csv", "--logger", "tensorboard", "--results", tmp_path)
    assert code == 0, out
    run_id = _only_row(tmp_path)["run_id"]
    logs = tmp_path / "logs"
    with open(logs / "csv" / run_id / "metrics.csv") as f:
        metrics = list(csv.DictReader(f))
    columns = set(metrics[0])
    assert {"train_loss", "val_accuracy", "val_loss", "val_gate_rate", "lambda", "train_gate_rate",
            "tokens_per_sec", "step"} <= columns
    assert any(name.startswith("lr-") for name in columns)  # LearningRateMonitor
    assert [float(m["val_accuracy"]) for m in metrics if m["val_accuracy"]] == \
        [p["accuracy"] for p in _curve(tmp_path, run_id) if p.get("accuracy") is not None]
    hparams = (logs / "csv" / run_id / "hparams.yaml").read_text()
    assert "num_kv_pairs: 4" in hparams and "max_steps: 8" in hparams

    events = EventAccumulator(str(logs / "tensorboard" / run_id))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train_loss", "val_accuracy", "lambda", "tokens_per_sec"} <= scalars
    # Lightning logs at the index of the batch just trained (0-based); curves count the steps done (4, 8)
    assert [e.step for e in events.Scalars("val_accuracy")] == [3, 7]


def test_mlflow_logs_to_a_local_store(cli, tmp_path):
    pytest.importorskip("mlflow")
    import mlflow

    code, out, _ = cli("run", *SMOKE, "--logger", "mlflow", "--results", tmp_path)
    assert code == 0, out
    from seqbench.train.tracking import mlflow_uri

    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri(tmp_path))
    (experiment,) = [e for e in client.search_experiments() if e.name == "seqbench"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == _only_row(tmp_path)["run_id"]
    assert "val_accuracy" in found.data.metrics and found.data.params["train/max_steps"] == "8"


def test_wandb_logs_offline(cli, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    code, out, _ = cli("run", *SMOKE, "--logger", "wandb", "--results", tmp_path)
    assert code == 0, out
    run_id = _only_row(tmp_path)["run_id"]
    (folder,) = (tmp_path / "logs" / "wandb" / "wandb").glob(f"offline-run-*-{run_id}")
    # the offline run's record log (protobuf records; wandb ships no Python reader for it any more):
    # the metric names and the config's keys are stored as plain strings
    records = (folder / f"run-{run_id}.wandb").read_bytes()
    for name in (b"train_loss", b"val_accuracy", b"tokens_per_sec", b"num_kv_pairs"):
        assert name in records


def test_a_logger_without_its_extra_is_a_user_error(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("mlflow",) else real(name, *a))
    code, _, err = cli("run", *SMOKE, "--logger", "mlflow", "--results", tmp_path)
    assert code == 2 and "seqbench[mlflow]" in err and "Traceback" not in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


class _FakeTrainer:
    def __init__(self):
        self.global_step = 0
        self.callback_metrics = {}


class _FakeModule:
    latest_val: dict = {}


def test_progress_prints_a_plain_line_at_most_every_30_s(tmp_path):
    from rich.console import Console

    now = [100.0]
    with open(tmp_path / "log.txt", "w") as log:
        progress = RunProgress(1000, "accuracy", console=Console(file=log, width=200), clock=lambda: now[0])
        trainer, module = _FakeTrainer(), _FakeModule()
        progress.on_train_start(trainer, module)
        for step in range(1, 101):  # 100 steps, 1 s each
            now[0] += 1.0
            trainer.global_step = step
            trainer.callback_metrics = {"train_loss": 2.5, "tokens_per_sec": 1234.0}
            module.latest_val = {"accuracy": 0.5} if step >= 50 else {}
            progress.on_train_batch_end(trainer, module, None, None, step)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "step 30/1000  loss 2.5000  1,234 tokens/s  elapsed 0:30  ETA 16:10"
    assert lines[2] == "step 90/1000  loss 2.5000  val accuracy 0.5000  1,234 tokens/s  elapsed 1:30  ETA 15:10"


def test_progress_in_a_terminal_is_one_bar_over_the_total_steps():
    import io

    from rich.console import Console

    screen = io.StringIO()
    progress = RunProgress(200, "accuracy", console=Console(file=screen, force_terminal=True, width=150))
    trainer, module = _FakeTrainer(), _FakeModule()
    progress.on_train_start(trainer, module)
    trainer.global_step, trainer.callback_metrics = 50, {"train_loss": 1.25}
    module.latest_val = {"accuracy": 0.75}
    progress.on_train_batch_end(trainer, module, None, None, 49)
    progress._bar.refresh()
    progress.on_train_end(trainer, module)
    shown = screen.getvalue()
    assert "50/200" in shown and "loss 1.2500" in shown and "val accuracy 0.7500" in shown and "ETA" in shown


def test_save_model_then_eval_gives_the_runs_test_metrics(cli, tmp_path):
    code, out, _ = cli("run", *SMOKE, "--save-model", "--threads", "1", "--results", tmp_path)
    assert code == 0, out
    row = _only_row(tmp_path)
    assert row["threads"] == 1
    assert (tmp_path / "models" / f"{row['run_id']}.pt").exists()
    code, out, _ = cli("eval", row["run_id"], "--results", tmp_path)
    assert code == 0, out
    (evaluated,) = pq.read_table(tmp_path / "evals" / f"{row['run_id']}.parquet").to_pylist()
    assert evaluated["seq_len"] == 32 and evaluated["status"] == "ok"
    for name in ("accuracy", "loss", "gate_rate", "accuracy_hard"):
        assert evaluated[name] == pytest.approx(row[name], abs=1e-6)
    assert f"accuracy={row['accuracy']:.4g}" in out


def test_eval_of_a_run_without_a_saved_model_is_a_user_error(cli, tmp_path):
    code, _, err = cli("eval", "no-such-run", "--results", tmp_path)
    assert code == 2 and "--save-model" in err


def test_sweep_with_a_logger_whose_extra_is_missing_runs_nothing(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "wandb" else real(name, *a))
    code, _, err = cli("sweep", "--models", "gru", "--tasks", "mqar", "--preset", "smoke", "--logger", "wandb",
                       "--results", tmp_path)
    assert code == 2 and "seqbench[wandb]" in err
    assert not (tmp_path / "runs").exists()


def test_concurrent_runs_divide_the_cores_and_forget_dead_holders(tmp_path):
    from seqbench.train.threads import CoreShare

    folder = tmp_path / "shares"
    with CoreShare(4, folder, load=None) as first:  # other programs' load: tests/test_threads.py
        assert first.fair_threads() == 4
        with CoreShare(4, folder, load=None):
            assert first.fair_threads() == 2  # a second run started: both take half
            (folder / "999999999-deadbeef").touch()  # a holder killed without cleaning up
            assert first.fair_threads() == 2 and not (folder / "999999999-deadbeef").exists()
        assert first.fair_threads() == 4  # the other ended: the cores come back
    assert not list(folder.iterdir())


def test_a_run_under_the_policy_takes_its_share_of_the_cores(registries, tmp_path, monkeypatch):
    from seqbench.train import threads as thread_policy

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(thread_policy, "available_cores", lambda: 2)
    monkeypatch.setattr(thread_policy, "_shares_dir", lambda: tmp_path / "shares")
    monkeypatch.setattr(thread_policy, "PROC", tmp_path / "no-proc")  # a busy test machine must not count
    config = resolve_run_config(registries, "gru", "mqar", preset="smoke")
    with thread_policy.CoreShare(2, tmp_path / "shares", load=None):  # another seqbench run is training meanwhile
        row = run(registries, config, RunOptions(results_dir=tmp_path / "r", progress=False))
    assert row["threads"] == 1
    alone = run(registries, config, RunOptions(results_dir=tmp_path / "r", progress=False))
    assert alone["threads"] == 2
    pinned = run(registries, config, RunOptions(results_dir=tmp_path / "r", progress=False, threads=2))
    assert pinned["threads"] == 2  # an explicit --threads shares nothing
