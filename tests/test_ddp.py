"""One run is one row under DDP: two CPU processes (gloo) started the way a user starts them, with the
``seqbench`` console script, which Lightning's ``ddp`` strategy re-runs for rank 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.train.lit import ThroughputMeter
from seqbench.train.runner import run

SEQBENCH = Path(sys.executable).with_name("seqbench")
TESTS = Path(__file__).resolve().parent
# An odd test split: rank 0 scores 32 examples, rank 1 31, and none twice (Lightning's default
# sampler would pad rank 1 with a repeat of example 0 and move the metrics off the single-process ones).
ODD_SPLIT = ["task.num_test=63"]


def seqbench_ddp(*argv: str, results: Path, env: dict[str, str] | None = None,
                 strategy: str = "ddp") -> subprocess.CompletedProcess:
    command = [str(SEQBENCH), "run", "--preset", "smoke", "--device", "cpu", "--devices", "2", "--strategy", strategy,
               "--no-progress", "--results", str(results), *argv]
    # a hang in a collective fails the test instead of stalling the suite
    return subprocess.run(command, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def only_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.parquet"))
    assert len(files) == 1, f"expected one file in {folder}, found {[f.name for f in files]}"
    return files[0]


@pytest.mark.slow
def test_ddp_writes_one_row_with_metrics_over_the_whole_test_split(tmp_path, registries):
    # lr so small that training leaves the weights as initialised: the test metrics then depend on the
    # data alone, and two ranks must score the whole split exactly as one process does
    sets = [*ODD_SPLIT, "train.lr=1e-12"]
    result = seqbench_ddp("--model", "gru", "--task", "mqar", *[f"--set={s}" for s in sets],
                          results=tmp_path / "ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("seqbench run") == 1, result.stdout  # rank 1 prints neither config nor row
    assert result.stdout.count("written to") == 1, result.stdout
    row = pq.read_table(only_file(tmp_path / "ddp" / "runs")).to_pylist()[0]
    only_file(tmp_path / "ddp" / "curves")
    assert row["status"] == "ok" and row["steps"] == 8

    config = resolve_run_config(registries, "gru", "mqar", preset="smoke", overrides=sets)
    single = run(registries, config, RunOptions(results_dir=tmp_path / "single", device="cpu", progress=False))
    assert row["config_hash"] == single["config_hash"]
    assert row["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
    assert row["loss"] == pytest.approx(single["loss"], rel=1e-6)


@pytest.mark.slow
def test_non_finite_loss_on_one_rank_stops_both_with_one_diverged_row(tmp_path):
    # the fake models reach the subprocesses the way a third-party plugin would: an entry point
    dist_info = tmp_path / "plugins" / "seqbench_test_fakes-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: seqbench-test-fakes\nVersion: 0\n")
    (dist_info / "entry_points.txt").write_text("[seqbench]\ntest_fakes = fake_plugins:fake_models\n")
    path = os.pathsep.join([str(tmp_path / "plugins"), str(TESTS), os.environ.get("PYTHONPATH", "")])
    result = seqbench_ddp("--model", "fake_gated", "--task", "mqar", "--set", "model.nan_on_rank=1",
                          results=tmp_path / "results", env={"PYTHONPATH": path},
                          # the fake's gate is not in its loss (it has no gate_lambda): DDP must be told
                          strategy="ddp_find_unused_parameters_true")
    assert result.returncode == 1, result.stderr[-3000:]  # rank 0 reports the divergence
    assert result.stdout.count("written to") == 1, result.stdout
    row = pq.read_table(only_file(tmp_path / "results" / "runs")).to_pylist()[0]
    assert row["status"] == "diverged"
    assert row["steps"] == 1  # rank 0's loss stayed finite, yet it stopped with rank 1 at the second step


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "ddp_notebook"])
def test_strategies_whose_ranks_cannot_report_back_are_refused(cli, tmp_path, strategy):
    code, _, err = cli("run", "--model", "gru", "--task", "mqar", "--preset", "smoke", "--device", "cpu",
                       "--devices", "2", "--strategy", strategy, "--results", tmp_path / "results")
    assert code == 2
    assert f"--strategy {strategy}" in err.replace("\n", " ") and "use --strategy ddp" in err
    assert not (tmp_path / "results").exists()


def test_throughput_is_every_ranks_tokens_over_the_slowest_ranks_time():
    class OtherRankCounted:  # the reductions of a DDP strategy whose other rank timed 3000 tokens in 4 s
        def reduce(self, tensor, reduce_op):
            return {"sum": tensor + 3000, "max": torch.clamp(tensor, min=4.0)}[reduce_op]

    trainer = type("Trainer", (), {"strategy": OtherRankCounted()})()
    module = type("Module", (), {"device": torch.device("cpu")})()
    meter = ThroughputMeter()
    meter.tokens, meter.seconds = 1000, 2.0
    meter.on_train_end(trainer, module)
    assert meter.tokens_per_sec == pytest.approx(4000 / 4.0)
