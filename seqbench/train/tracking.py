"""Watching a run: Lightning's experiment loggers (``--logger``) and the live curve file.

Every logger is Lightning's own (``lightning.pytorch.loggers``), written under ``<results>/logs/``:
``csv/<run_id>/metrics.csv``; ``tensorboard/<run_id>/`` (``tensorboard --logdir results/logs/tensorboard``);
``mlflow.db``, a local MLflow store (``mlflow ui --backend-store-uri sqlite:///results/logs/mlflow.db``);
``wandb/`` (W&B; ``WANDB_MODE=offline`` keeps it local). Only CSV needs nothing extra; the others are
the extras ``seqbench[tensorboard|mlflow|wandb]``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import loggers
from lightning.pytorch.loggers import WandbLogger

from seqbench.errors import UserError
from seqbench.results import write_curve

LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
# logger -> (modules any one of which it needs, the extra that installs them)
_NEEDS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
          "mlflow": (("mlflow",), "mlflow"), "wandb": (("wandb",), "wandb")}


def check_loggers(names: tuple[str, ...]) -> None:
    """Raise UserError, before any work, for an unknown logger or one whose package is not installed."""
    for name in names:
        if name not in LOGGERS:
            raise UserError(f"unknown --logger {name!r}: choose one of {', '.join(LOGGERS)}")
        if name in _NEEDS:
            modules, extra = _NEEDS[name]
            if not any(importlib.util.find_spec(m) for m in modules):
                raise UserError(f"--logger {name} needs the {modules[0]} package: "
                                f"pip install 'seqbench[{extra}]'")


def build_loggers(names: tuple[str, ...], results_dir: Path, run_id: str,
                  hyperparameters: dict[str, Any]) -> list[Any]:
    """Lightning loggers for ``names`` (checked by :func:`check_loggers`), each given the resolved config
    as hyperparameters. A resumed run passes its first run id, so each logger continues the same run."""
    check_loggers(names)
    root = Path(results_dir) / "logs"
    built: list[Any] = []
    for name in dict.fromkeys(names):
        if name == "csv":
            built.append(loggers.CSVLogger(root, name="csv", version=run_id))
        elif name == "tensorboard":
            built.append(loggers.TensorBoardLogger(root, name="tensorboard", version=run_id,
                                                   default_hp_metric=False))
        elif name == "mlflow":
            # a local SQLite store: MLflow 3 refuses its plain-file store unless MLFLOW_ALLOW_FILE_STORE is set
            root.mkdir(parents=True, exist_ok=True)
            built.append(loggers.MLFlowLogger(experiment_name="seqbench", run_name=run_id,
                                              tracking_uri=mlflow_uri(results_dir),
                                              artifact_location=(root / "mlartifacts").resolve().as_uri()))
        elif name == "wandb":
            (root / "wandb").mkdir(parents=True, exist_ok=True)
            built.append(loggers.WandbLogger(name=run_id, id=run_id, project="seqbench", save_dir=str(root / "wandb"),
                                             resume="allow"))
    for logger in built:
        logger.log_hyperparams(hyperparameters)
    return built


def close_loggers(built: list[Any]) -> None:
    """End each logger's run once the run's row is written. Lightning finalizes its loggers after fit and
    test, but a W&B run stays open until ``finish()`` (else the next run in this process, a sweep's next
    cell, would log into it)."""
    for logger in built:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def mlflow_uri(results_dir: Path) -> str:
    return f"sqlite:///{(Path(results_dir) / 'logs' / 'mlflow.db').resolve()}"


class LiveCurve(L.Callback):
    """Rewrites ``<results>/curves/<run_id>.parquet`` (atomically) after every evaluation, so a plot or
    a notebook can follow a run in flight. The run's row in ``runs/`` is still written only at the end."""

    def __init__(self, results_dir: Path, run_id: str):
        self.results_dir = Path(results_dir)
        self.run_id = run_id

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.is_global_zero and pl_module.curve:
            write_curve(self.results_dir, self.run_id, pl_module.curve)
