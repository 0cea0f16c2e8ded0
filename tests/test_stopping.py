"""How a run ends: each stop reason through Lightning's EarlyStopping on fake validation curves, the
trend of a curve, and a real TGN smoke run whose row records it (with the hard-gated validation pass)."""

from __future__ import annotations

import json

import lightning as L
import pyarrow.parquet as pq
import pytest
import torch
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch import nn

from seqbench.configure.config import ConfigError, TrainConfig, identity_dict
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.train.runner import run
from seqbench.train.stopping import curve_summary, early_stopping, row_columns, stop_reason, trend


class FakeCurve(L.LightningModule):
    """Trains nothing real: each evaluation logs the next value of a fixed validation accuracy curve."""

    def __init__(self, values: list[float], diverge_at: int | None = None):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.values = values
        self.diverge_at = diverge_at
        self.evaluations = 0
        self.diverged = False
        self.curve: list[dict] = []

    def training_step(self, batch, batch_idx):
        if self.diverge_at is not None and self.global_step >= self.diverge_at:
            self.diverged = True
            self.trainer.should_stop = True
            return None
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        value = self.values[min(self.evaluations, len(self.values) - 1)]
        self.evaluations += 1
        self.curve.append({"step": float(self.global_step), "accuracy": value})
        self.log("val_accuracy", value)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(1000, 1)), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(1, 1)), batch_size=1)


def fit(values, max_steps=100, diverge_at=None, **train):
    config = TrainConfig(max_steps=max_steps, eval_every=10, **train)
    module = FakeCurve(values, diverge_at)
    stoppers = early_stopping(config, "accuracy")
    trainer = L.Trainer(max_steps=max_steps, val_check_interval=10, check_val_every_n_epoch=None,
                        limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=stoppers)
    trainer.fit(module)
    return row_columns(module.diverged, stoppers, module.curve, "accuracy"), trainer.global_step


def test_target_stops_at_the_threshold():
    columns, steps = fit([0.1, 0.5, 0.9, 0.995, 1.0, 1.0], stop_at=0.99)
    assert columns["stop_reason"] == "target" and steps == 40
    assert columns["best_val"] == 0.995 and columns["best_val_step"] == 40.0


def test_plateau_stops_after_patience_evaluations_without_gain():
    columns, steps = fit([0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.9], patience=3, min_delta=0.01)
    assert columns["stop_reason"] == "plateau" and steps == 50  # best at 20, then 3 evaluations without gain
    assert columns["best_val"] == 0.3 and columns["best_val_step"] == 20.0


def test_budget_when_nothing_stops_it_and_the_trend_says_still_rising():
    columns, steps = fit([0.05 * i for i in range(1, 11)], stop_at=0.99, patience=3)
    assert columns["stop_reason"] == "budget" and steps == 100
    assert columns["val_trend"] == pytest.approx(0.1)  # last 20% of 10 evaluations: a line through 3


def test_diverged_wins_over_every_other_reason():
    columns, steps = fit([0.1 * i for i in range(1, 11)], diverge_at=25, patience=1)
    assert columns["stop_reason"] == "diverged" and steps < 30
    plateau = early_stopping(TrainConfig(patience=1), "accuracy")
    plateau[0].stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert stop_reason(True, plateau) == "diverged" and stop_reason(False, plateau) == "plateau"


def test_no_stopping_by_default_and_the_hash_of_a_run_without_it_is_unchanged():
    assert early_stopping(TrainConfig(), "accuracy") == []
    assert "stop_at" not in identity_dict(TrainConfig()) and "patience" not in identity_dict(TrainConfig())
    assert identity_dict(TrainConfig(stop_at=0.99))["stop_at"] == 0.99
    with pytest.raises(ConfigError, match="train.patience"):
        TrainConfig(patience=0)


def test_trend_is_a_line_through_the_last_fifth_of_evaluations():
    flat_then_noise = [(float(s), 0.5) for s in range(15)] + [(15.0, 0.52), (16.0, 0.48), (17.0, 0.52),
                                                               (18.0, 0.48), (19.0, 0.52)]
    assert abs(trend(flat_then_noise)) < 0.02  # a line through noise, not its last two points
    assert trend([(float(s), s / 100) for s in range(20)]) == pytest.approx(0.04)
    assert trend([(0.0, 0.3)]) is None
    assert curve_summary([], "accuracy") == {"best_val": None, "best_val_step": None, "val_trend": None}
    # language modelling reads the loss, lower is better
    summary = curve_summary([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 2.5}],
                            "loss", higher=False)
    assert summary["best_val"] == 2.0 and summary["best_val_step"] == 2.0


def test_a_tgn_smoke_row_records_how_it_ended_and_its_hard_gated_validation(registries, tmp_path):
    config = resolve_run_config(registries, "tgn", "mqar", preset="smoke", variant="parallel")
    row = run(registries, config, RunOptions(results_dir=tmp_path, progress=False))
    assert row["stop_reason"] == "budget" and row["steps"] == config.train.max_steps
    assert 0.0 <= row["val_accuracy_hard"] <= 1.0 and 0.0 <= row["val_gate_rate_hard"] <= 1.0
    assert 0.0 <= row["val_gate_mean"] <= 1.0 and 0.0 <= row["val_gate_rate"] <= 1.0
    assert row["best_val_step"] in (4.0, 8.0) and row["val_trend"] is not None


def test_stop_at_from_the_command_line_stops_a_real_run_at_its_first_evaluation(cli, tmp_path):
    code, out, _ = cli("run", "--model", "gru", "--task", "mqar", "--preset", "smoke", "--no-progress",
                       "--set", "train.stop_at=0", "--results", tmp_path)
    assert code == 0, out
    (path,) = (tmp_path / "runs").glob("*.parquet")
    row = pq.read_table(path).to_pylist()[0]
    assert row["stop_reason"] == "target" and row["steps"] == row["best_val_step"] == 4  # smoke: eval_every 4
    assert json.loads(row["config_json"])["train"]["stop_at"] == 0.0
