"""--eval-lengths (fresh test splits at other lengths, <results>/evals/), RoPE positions, and the final
validation pass's metrics in the row."""

from __future__ import annotations

import lightning as L
import pyarrow.parquet as pq
import pytest
import torch

from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import load_target
from seqbench.results import iter_rows, read_evals, read_runs
from seqbench.train.evals import evaluate_lengths
from seqbench.train.runner import run

SMOKE = ("--task", "mqar", "--preset", "smoke", "--no-progress")


def _module(registries, config):
    data = load_target(registries.tasks.get(config.task).build)(config.task_config, seed=0, batch_size=8)
    torch.manual_seed(0)
    return load_target(registries.models.get(config.model).build)(config.model_config, data.info())


def test_run_tests_again_at_other_lengths(cli, tmp_path):
    code, out, _ = cli("run", "--model", "transformer", *SMOKE, "--eval-lengths", "32,64", "--results", tmp_path)
    assert code == 0, out
    (row,) = iter_rows(read_runs(tmp_path))
    at = {r["seq_len"]: r for r in pq.read_table(tmp_path / "evals" / f"{row['run_id']}.parquet").to_pylist()}
    # at the training length the fresh split is the run's own test split: the same numbers
    assert at[32]["status"] == "ok" and at[32]["accuracy"] == row["accuracy"] and at[32]["loss"] == row["loss"]
    assert at[64]["status"] == "unsupported" and "learned positions" in at[64]["error"]
    assert at[64]["accuracy"] is None and at[64]["length_key"] == "seq_len" and at[64]["trained_len"] == 32
    assert row["val_accuracy"] is not None and row["val_loss"] > 0 and row["val_perplexity"] is None
    assert row["state_size"] == 2 * 32 * 16  # one layer's KV cache at L = 32, d = 16

    code, out, _ = cli("run", "--model", "transformer", *SMOKE, "--set", "model.positions=rope",
                       "--eval-lengths", "64", "--results", tmp_path)
    assert code == 0, out
    rope = [r for r in iter_rows(read_evals(tmp_path)) if r["seq_len"] == 64 and r["status"] == "ok"]
    assert len(rope) == 1 and rope[0]["loss"] > 0
    code, out, _ = cli("leaderboard", "--results", tmp_path, "--length", "64")
    assert code == 0 and "at length 64" in out and "model.positions=rope" in out and "1 not ok" in out
    code, out, err = cli("plot", "--results", tmp_path, "--out", tmp_path / "plots")
    assert code == 0 and (tmp_path / "plots" / "accuracy_vs_length_mqar_smoke.png").stat().st_size > 0
    assert "unsupported or failed" in err


@pytest.mark.parametrize("argv,message", [
    (("--eval-lengths", "8"), "does not fit task 'mqar'"),  # 4 key-value pairs need seq_len >= 16
    (("--eval-lengths", "abc"), "bad --eval-lengths"),
    (("--eval-lengths", "64,64"), "distinct positive lengths"),
])
def test_impossible_lengths_stop_before_training(cli, tmp_path, argv, message):
    code, _, err = cli("run", "--model", "gru", *SMOKE, *argv, "--results", tmp_path)
    assert code == 2 and message in err and not tmp_path.joinpath("runs").exists()


def test_gated_models_get_hard_metrics_and_changed_classes_are_unsupported(registries, tmp_path):
    config = resolve_run_config(registries, "tgn", "mqar", preset="smoke")
    (row,) = evaluate_lengths(registries, config, _module(registries, config), [64], tmp_path, "tgn-run")
    assert row["status"] == "ok" and row["accuracy_hard"] is not None and row["gate_rate_hard"] is not None
    ring = resolve_run_config(registries, "gru", "ring_distance", preset="smoke")
    (row,) = evaluate_lengths(registries, ring, _module(registries, ring), [24], tmp_path, "ring-run")
    assert row["status"] == "unsupported" and "classes" in row["error"]
    assert {r["run_id"] for r in iter_rows(read_evals(tmp_path))} == {"tgn-run", "ring-run"}


def test_rope_is_causal_and_runs_beyond_the_training_length(registries):
    config = resolve_run_config(registries, "transformer", "mqar", preset="smoke", overrides=["model.positions=rope"])
    module = _module(registries, config).eval()
    assert module.max_seq_len() is None
    tokens = torch.randint(0, 64, (2, 128))  # 4x the training length
    changed = tokens.clone()
    changed[:, 70] = (changed[:, 70] + 1) % 64
    with torch.no_grad():
        a, b = module(tokens), module(changed)
    assert torch.equal(a[:, :70], b[:, :70]) and not torch.equal(a[:, 70:], b[:, 70:])


def test_final_validation_reads_the_whole_split(registries, tmp_path):
    """The row's val_accuracy is the whole validation split's (curve points read only eval_batches of it)."""
    from seqbench.train.lit import EvalMetrics

    seen = {}

    class Recompute(L.Callback):
        def on_test_start(self, trainer, pl_module):
            metrics = EvalMetrics(pl_module.info)
            batches = 0
            with torch.no_grad():
                for tokens, targets in trainer.datamodule.val_dataloader():
                    metrics.update(pl_module(tokens), targets, 0.5)
                    batches += 1
            seen.update(metrics.compute("accuracy"), batches=batches)

    config = resolve_run_config(registries, "gru", "mqar", preset="smoke")
    row = run(registries, config, RunOptions(results_dir=tmp_path, progress=False, callbacks=(Recompute(),)))
    assert seen["batches"] == 2 and config.train.eval_batches == 1
    assert row["val_accuracy"] == pytest.approx(seen["accuracy"]) and row["val_loss"] == pytest.approx(seen["loss"])


def test_sweep_passes_params_and_eval_lengths_to_every_cell(cli, tmp_path):
    code, out, err = cli("sweep", "--models", "gru", "--tasks", "mqar", "--preset", "smoke", "--params", "5k",
                         "--eval-lengths", "64", "--results", tmp_path)
    assert code == 0, out + err
    (row,) = iter_rows(read_runs(tmp_path))
    assert row["param_budget"] == 5000 and abs(row["n_params"] - 5000) <= 250
    (evaluation,) = iter_rows(read_evals(tmp_path))
    assert evaluation["run_id"] == row["run_id"] and evaluation["status"] == "ok"
