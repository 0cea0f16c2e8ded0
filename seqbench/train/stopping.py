"""How a run ended: early stopping (Lightning's ``EarlyStopping``), the stop reason and the curve's trend.

A row says why training stopped (``stop_reason``):

- ``target``: the validation metric reached ``train.stop_at`` (zoology stops at 0.99 accuracy);
- ``plateau``: ``train.patience`` evaluations passed without a gain of ``train.min_delta``;
- ``budget``: ``train.max_steps`` was reached (the cap, always on);
- ``diverged``: the loss became non-finite (seqbench.train.lit stops training itself).

and where the curve was going: ``best_val`` and ``best_val_step`` (the best evaluation), and
``val_trend``, the change of the validation metric over the last 20% of evaluations (a least-squares
line through them, so one noisy point does not decide it). A ``budget`` run with a rising trend was
still learning: a verdict that it fails is budget-limited (seqbench.analyse.report).

The monitored metric is the curve's ``accuracy``, or its ``loss`` for language modelling, where
accuracy is not what is compared; :func:`curve_summary` reads old results' curves the same way.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from scipy import stats

from seqbench.configure.config import TrainConfig

STOP_REASONS = ("target", "plateau", "budget", "diverged")
TREND_FRACTION = 0.2  # the trend reads the last 20% of evaluations


def monitored(task_metric: str) -> tuple[str, bool]:
    """The curve metric early stopping and the trend read, and whether higher is better."""
    return ("loss", False) if task_metric == "perplexity" else ("accuracy", True)


class TargetStop(EarlyStopping):
    """Stops once the monitored metric reaches ``train.stop_at``; never on patience."""


class PlateauStop(EarlyStopping):
    """Stops after ``train.patience`` evaluations without a gain of ``train.min_delta``."""


def early_stopping(train: TrainConfig, task_metric: str) -> list[EarlyStopping]:
    """The EarlyStopping callbacks ``train`` asks for (none by default). They check after each curve
    evaluation (``val_<metric>``, logged by seqbench.train.lit), not at epoch ends; a non-finite metric
    is left to the module's own divergence stop, so ``diverged`` keeps its meaning."""
    metric, higher = monitored(task_metric)
    common = {"monitor": f"val_{metric}", "mode": "max" if higher else "min", "check_finite": False,
              "check_on_train_epoch_end": False}
    callbacks: list[EarlyStopping] = []
    if train.stop_at is not None:
        # patience past any run's number of evaluations: this callback stops on the threshold alone
        callbacks.append(TargetStop(stopping_threshold=train.stop_at, patience=train.max_steps + 1, **common))
    if train.patience is not None:
        callbacks.append(PlateauStop(patience=train.patience, min_delta=train.min_delta, **common))
    return callbacks


def stop_reason(diverged: bool, callbacks: list[Any]) -> str:
    """Why training stopped, from the module's divergence flag and the EarlyStopping callbacks."""
    if diverged:
        return "diverged"
    for callback in callbacks:
        if isinstance(callback, TargetStop) and callback.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD:
            return "target"
        if isinstance(callback, PlateauStop) and callback.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED:
            return "plateau"
    return "budget"


def curve_summary(points: list[dict[str, Any]], metric: str = "accuracy", higher: bool = True
                  ) -> dict[str, float | None]:
    """``best_val``, ``best_val_step`` and ``val_trend`` of one run's evaluation points (dicts with
    ``step`` and ``metric``); None values without evaluations (a trend needs at least two)."""
    series = sorted((float(p["step"]), float(p[metric])) for p in points if p.get(metric) is not None)
    if not series:
        return {"best_val": None, "best_val_step": None, "val_trend": None}
    step, best = (max if higher else min)(series, key=lambda sv: (sv[1], -sv[0]))
    return {"best_val": best, "best_val_step": step, "val_trend": trend(series)}


def trend(series: list[tuple[float, float]]) -> float | None:
    """The change of the metric over the last TREND_FRACTION of the evaluations: the slope of a
    least-squares line (scipy.stats.linregress) through them times the steps they span. The window
    takes the point before it as well, so 20 evaluations give a line through the last 5."""
    found = trend_window(series)
    return None if found is None else found[0]


def trend_window(series: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(the trend, the steps its window spans); None with fewer than two evaluations."""
    if len(series) < 2:
        return None
    count = max(2, round(TREND_FRACTION * len(series)) + 1)
    window = series[-count:]
    steps = [s for s, _ in window]
    if len(set(steps)) < 2:
        return None
    values = [v for _, v in window]
    span = steps[-1] - steps[0]
    if len(set(values)) == 1:  # linregress needs some spread; a flat line changes by nothing
        return 0.0, span
    return float(stats.linregress(steps, values).slope * span), span


def row_columns(diverged: bool, callbacks: list[Any], curve: list[dict[str, Any]], task_metric: str
                ) -> dict[str, Any]:
    """The run row's columns on how training ended (see the module docstring)."""
    metric, higher = monitored(task_metric)
    evaluations = [p for p in curve if p.get("accuracy") is not None]  # not the per-step training points
    return {"stop_reason": stop_reason(diverged, callbacks), **curve_summary(evaluations, metric, higher)}
