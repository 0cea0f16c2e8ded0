"""The one LightningModule: wraps a model's plain ``nn.Module`` with its loss and metrics."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from seqbench.capabilities import gate_modes, gate_schedule, gate_threshold, position_readout
from seqbench.configure.config import TrainConfig
from seqbench.contracts import ModelOutput, TaskInfo
from seqbench.train.output_check import check_output
from seqbench.train.probes import layer_ranks


class Scored(NamedTuple):
    """A model's output where the targets score (seqbench.train.lit.SeqbenchModule.scored)."""

    out: ModelOutput  # logits (N, C) at the scored positions for token targets, else (B, C)
    targets: torch.Tensor  # (N,) or (B,)
    positions: torch.Tensor | None  # (B, T) bool mask of the scored positions; None for sequence targets


def as_output(result: Any) -> ModelOutput:
    return result if isinstance(result, ModelOutput) else ModelOutput(logits=result)


def gate_fraction(gates: torch.Tensor, threshold: float) -> torch.Tensor:
    """The gate rate: the fraction of gates above the threshold."""
    return (gates > threshold).float().mean()


class EvalMetrics(nn.Module):
    """torchmetrics accumulators for one evaluation pass (validation curve point or final test)."""

    def __init__(self, info: TaskInfo):
        super().__init__()
        self.accuracy = MulticlassAccuracy(num_classes=info.num_classes, ignore_index=info.ignore_index,
                                           average="micro")
        self.loss = MeanMetric()  # weighted by scored targets, so it is the per-token mean
        self.gate_rate = MeanMetric()
        self.gate_mean = MeanMetric()
        self.extras = nn.ModuleDict()
        # Ordinal tasks: how far off the predicted class is, not just whether it is right.
        self.mae = MeanAbsoluteError() if info.ordinal else None
        self.ignore_index = info.ignore_index

    def update(self, out: ModelOutput, targets: torch.Tensor, threshold: float) -> None:
        logits = out.logits.reshape(-1, out.logits.shape[-1])
        flat = targets.reshape(-1)
        scored = (flat != self.ignore_index).sum()
        if scored == 0:
            return
        loss = F.cross_entropy(logits.float(), flat, ignore_index=self.ignore_index)
        self.loss.update(loss, weight=scored)
        self.accuracy.update(logits, flat)
        if self.mae is not None:
            keep = flat != self.ignore_index
            self.mae.update(logits[keep].argmax(-1).float(), flat[keep].float())
        if out.gates is not None:
            gates = out.gates.detach().float()
            self.gate_rate.update(gate_fraction(gates, threshold), weight=gates.numel())
            self.gate_mean.update(gates.mean(), weight=gates.numel())
        for name, value in out.extras.items():
            if name not in self.extras:
                self.extras[name] = MeanMetric().to(logits.device)
            self.extras[name].update(torch.as_tensor(value, dtype=torch.float32).detach())

    def compute(self, metric: str) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.loss.update_count == 0:
            return result
        result["loss"] = float(self.loss.compute())
        result["accuracy"] = float(self.accuracy.compute())
        if metric == "perplexity":
            result["perplexity"] = math.exp(min(result["loss"], 50.0))
        if self.mae is not None:
            result["mae"] = float(self.mae.compute())
        if self.gate_rate.update_count:
            result["gate_rate"] = float(self.gate_rate.compute())
            result["gate_mean"] = float(self.gate_mean.compute())
        for name, extra in self.extras.items():
            result[name] = float(extra.compute())
        return result

    def reset(self) -> None:
        for child in (self.accuracy, self.loss, self.gate_rate, self.gate_mean, *self.extras.values()):
            child.reset()
        if self.mae is not None:
            self.mae.reset()


def final_validation_columns(soft: dict[str, float], hard: dict[str, float]) -> dict[str, float]:
    """The row's ``val_*`` columns from the final validation pass: what a claim is tuned on. A gated
    model's hard-gated pass (attention only where g > tau) is there too, so a claim on hard-gated
    accuracy is chosen on ``val_accuracy_hard``, not on the soft accuracy it does not measure."""
    columns = {f"val_{name}": soft[name] for name in ("accuracy", "loss", "perplexity", "gate_rate", "gate_mean")
               if name in soft}
    columns.update({f"val_{name}_hard": hard[name] for name in ("accuracy", "loss", "gate_rate", "gate_mean")
                    if name in hard})
    return columns


def build_optimizer(module: nn.Module, c: TrainConfig):
    """AdamW with linear warm-up then cosine decay to 10% of the peak learning rate (stepped per step)."""
    # Matrices decay; biases, norms and parameters marked `_no_weight_decay` (mamba_ssm's convention) don't.
    params = list(module.parameters())
    decay = [p for p in params if p.ndim >= 2 and not getattr(p, "_no_weight_decay", False)]
    no_decay = [p for p in params if p.ndim < 2 or getattr(p, "_no_weight_decay", False)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=(0.9, 0.98))

    def schedule(step: int) -> float:
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = min(1.0, (step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


class SeqbenchModule(L.LightningModule):
    """Cross-entropy (+ ``lambda * mean(gate)`` for gated models) with AdamW and warm-up/cosine.

    After a run: ``curve`` holds one dict per evaluation (for models with gate modes, with the
    hard-gated pass's metrics as ``*_hard``; plus, for gated models, one per training
    step with ``lambda``, ``train_loss``, ``train_gate_rate``, ``train_gate_mean``; evaluation points
    are the rows with ``accuracy``), ``val_final`` the final validation pass's ``val_accuracy``,
    ``val_loss`` (and ``val_perplexity``; for gated models ``val_gate_rate``, ``val_gate_mean`` and the
    hard-gated ``val_accuracy_hard``, ``val_gate_rate_hard``, ``val_gate_mean_hard``), ``test_metrics``
    the final test metrics, ``diverged`` whether
    a non-finite loss stopped training, ``latest_val`` the last evaluation's metrics.

    Logged to the trainer's loggers: ``train_loss``, and for gated models ``train_gate_rate`` and
    ``lambda``, every step; ``val_<metric>`` at each evaluation.
    """

    def __init__(self, module: nn.Module, info: TaskInfo, train: TrainConfig, probes: tuple[str, ...] = (),
                 model_name: str | None = None, run_id: str | None = None):
        super().__init__()
        self.model_name = model_name or type(module).__name__  # who to name when its output is wrong
        self.checked_stages: set[str] = set()  # stages whose first output was checked against the task
        self.run_id = run_id  # kept in checkpoints: a resumed run continues the same run (and live curve)
        self.probes = probes
        self.probe_tokens: torch.Tensor | None = None  # the fixed batch probes read (first validation batch)
        self.module = module
        self.info = info
        self.train_config = train
        self.val_metrics = EvalMetrics(info)
        self.val_metrics_hard = EvalMetrics(info)  # gated models: each curve point is measured hard-gated too
        self.test_metrics_acc = EvalMetrics(info)
        self.test_metrics_hard = EvalMetrics(info)
        self.curve: list[dict[str, float]] = []
        self.test_metrics: dict[str, float] = {}
        self.final_validation = False  # set for the pass after training: it fills val_final, not the curve
        self.val_final: dict[str, float] = {}
        self.diverged = False
        self.finite_steps = 0  # optimizer steps taken (a non-finite loss skips its step)
        self.last_lambda = 0.0
        self.latest_val: dict[str, float] = {}

    def forward(self, tokens: torch.Tensor) -> ModelOutput:
        return as_output(self.module(tokens))

    def scored(self, tokens: torch.Tensor, targets: torch.Tensor, stage: str | None = None) -> Scored:
        """The model's output where the targets score, and those targets.

        Token targets: logits ``(N, C)`` and targets ``(N,)`` at the ``N`` scored positions. A model with
        ``read_out_at`` (seqbench.api.PositionReadout) runs its output head only there; any other
        model's full logits are checked, then picked at the positions. Sequence targets pass as they
        are. ``stage``: the first output of each stage is checked against the task (shape, finite).
        """
        check = stage is not None and stage not in self.checked_stages
        if self.info.target != "token":
            out, positions, picked = self(tokens), None, targets
            if check:
                check_output(out, targets, self.info, self.model_name, stage, require_finite=not self.diverged)
        else:
            positions = targets != self.info.ignore_index  # (B, T)
            picked = targets[positions]  # (N,)
            reader = position_readout(self.module)
            if reader is not None:
                out = as_output(reader.read_out_at(tokens, positions))
                if check:
                    check_output(out, picked, self.info, self.model_name, stage, require_finite=not self.diverged,
                                 at_positions=True)
            else:
                out = self(tokens)
                if check:
                    check_output(out, targets, self.info, self.model_name, stage, require_finite=not self.diverged)
                out = dataclasses.replace(out, logits=out.logits[positions])
        if check:
            self.checked_stages.add(stage)
        return Scored(out, picked, positions)

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=self.info.ignore_index)

    def lambda_signal(self, scored: Scored, loss: torch.Tensor) -> torch.Tensor:
        """The task loss an adaptive lambda follows: at the positions the evaluation scores
        (``TaskInfo.eval_scores``). Associative recall trains on every next token, half of them a
        random key nothing can predict; their loss would hold lambda near a third of its maximum."""
        if self.info.eval_scores == "all" or scored.positions is None:
            return loss
        last = torch.zeros_like(scored.positions)
        last[:, -1] = True
        keep = last[scored.positions]  # (N,): which scored targets are a row's last
        if not bool(keep.any()):
            return loss
        return self.task_loss(scored.out.logits[keep], scored.targets[keep])

    def training_step(self, batch, batch_idx):
        tokens, targets = batch
        scored = self.scored(tokens, targets, "training")
        out = scored.out
        loss = self.task_loss(out.logits, scored.targets)
        total = loss
        schedule = gate_schedule(self.module)
        if out.gates is not None and schedule is not None:
            signal = self.lambda_signal(scored, loss).detach()
            self.last_lambda = float(schedule.gate_lambda(self.global_step, signal))
            total = loss + self.last_lambda * out.gates.mean()
            gates = out.gates.detach().float()
            point = {"step": float(self.global_step), "lambda": self.last_lambda,
                     "train_loss": float(loss.detach()), "lambda_loss": float(signal),
                     "train_gate_rate": float(gate_fraction(gates, gate_threshold(self.module))),
                     "train_gate_mean": float(gates.mean())}
            self.curve.append(point)
            self.log_dict({"lambda": point["lambda"], "train_gate_rate": point["train_gate_rate"]},
                          on_step=True, on_epoch=False)
        # Under DDP every rank must take the same path: a rank that skipped backward would leave the
        # others waiting in the gradient all-reduce, so a non-finite loss on any rank stops them all.
        if self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(total)), all=False):
            self.diverged = True
            self.trainer.should_stop = True
            if self.trainer.world_size == 1:
                return None  # skips backward and the optimizer step
            # Lightning refuses a skipped step under DDP (the gradient all-reduce needs every rank): a
            # zero loss reaching every parameter makes that last step's gradients zero on all ranks.
            return sum(p.sum() for p in self.module.parameters() if p.requires_grad) * 0.0
        self.finite_steps += 1
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=False)
        return total

    def validation_step(self, batch, batch_idx):
        tokens, targets = batch
        if batch_idx == 0 and self.probe_tokens is None:
            self.probe_tokens = tokens
        scored = self.scored(tokens, targets, "validation")
        self.val_metrics.update(scored.out, scored.targets, gate_threshold(self.module))
        self._update_hard(self.val_metrics_hard, tokens, targets)

    def _update_hard(self, metrics: EvalMetrics, tokens: torch.Tensor, targets: torch.Tensor) -> None:
        """One hard-gated pass (attention only where g > tau) for a model with gate modes, left soft after."""
        modes = gate_modes(self.module)
        if modes is None:
            return
        modes.set_gate_mode("hard")
        try:
            scored = self.scored(tokens, targets)
            metrics.update(scored.out, scored.targets, gate_threshold(self.module))
        finally:
            modes.set_gate_mode("soft")

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute(self.info.metric)
        self.val_metrics.reset()
        # the soft gate rate alone can hide a model that needs the attention it barely opens: the
        # curves record the hard-gated accuracy beside it (columns *_hard)
        hard = self.val_metrics_hard.compute(self.info.metric)
        self.val_metrics_hard.reset()
        if self.trainer.sanity_checking or not metrics:
            return
        if self.final_validation:
            self.val_final = final_validation_columns(metrics, hard)
            return
        metrics.update({f"{name}_hard": value for name, value in hard.items()})
        point = {"step": float(self.global_step), **metrics}
        if gate_schedule(self.module) is not None:
            point["lambda"] = self.last_lambda
        if "rank" in self.probes and self.probe_tokens is not None:
            point.update(layer_ranks(self.module, self.probe_tokens))
        self.curve.append(point)
        self.latest_val = metrics
        self.log_dict({f"val_{name}": value for name, value in metrics.items()})

    def test_step(self, batch, batch_idx):
        tokens, targets = batch
        scored = self.scored(tokens, targets, "test")
        self.test_metrics_acc.update(scored.out, scored.targets, gate_threshold(self.module))
        self._update_hard(self.test_metrics_hard, tokens, targets)  # tested twice: soft, then hard-gated

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self.test_metrics_acc.compute(self.info.metric)
        self.test_metrics_acc.reset()
        if gate_modes(self.module) is not None:
            hard = self.test_metrics_hard.compute(self.info.metric)
            self.test_metrics_hard.reset()
            self.test_metrics.update({f"{name}_hard": value for name, value in hard.items()})
        if gate_schedule(self.module) is not None:
            self.test_metrics["lambda"] = self.last_lambda

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["seqbench"] = {"run_id": self.run_id, "curve": self.curve, "finite_steps": self.finite_steps,
                                  "last_lambda": self.last_lambda, "diverged": self.diverged,
                                  "latest_val": self.latest_val}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["seqbench"]
        self.curve = [dict(point) for point in state["curve"]]
        self.finite_steps, self.last_lambda = state["finite_steps"], state["last_lambda"]
        self.diverged, self.latest_val = state["diverged"], dict(state["latest_val"])

    def configure_optimizers(self):
        optimizer, scheduler = build_optimizer(self.module, self.train_config)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ThroughputMeter(L.Callback):
    """Training tokens/s: input tokens over the time spent in training batches (forward, backward,
    optimizer step), the first batch excluded as warm-up. Evaluation time is not counted."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self._start = 0.0
        self._batches = 0

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._batches += 1
        if self._batches > 1:
            self.seconds += time.perf_counter() - self._start
            self.tokens += batch[0].numel()
            pl_module.log("tokens_per_sec", self.tokens / self.seconds, on_step=True, on_epoch=False)

    def on_train_end(self, trainer, pl_module) -> None:
        # Under DDP each rank timed its own batches: the run's throughput is the tokens of every rank
        # over the slowest rank's time (a no-op on one process).
        tokens = torch.tensor(float(self.tokens), dtype=torch.float64, device=pl_module.device)
        seconds = torch.tensor(self.seconds, dtype=torch.float64, device=pl_module.device)
        self.tokens = int(trainer.strategy.reduce(tokens, reduce_op="sum"))
        self.seconds = float(trainer.strategy.reduce(seconds, reduce_op="max"))

    @property
    def tokens_per_sec(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None


class ShareCores(L.Callback):
    """Every ``every`` training batches, set torch's threads to this process's fair share of the cores
    (seqbench.train.threads.CoreShare): a second seqbench run starting on the machine halves both, and its end
    gives the cores back. ``threads`` is the count in use when training ended."""

    def __init__(self, share, every: int = 20) -> None:
        self.share = share
        self.every = every
        self.threads = torch.get_num_threads()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx % self.every == 0:
            fair = self.share.fair_threads()
            if fair != torch.get_num_threads():
                torch.set_num_threads(fair)
            self.threads = fair
