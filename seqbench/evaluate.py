"""``seqbench eval RUN_ID``: test a model saved with ``run --save-model`` again, without retraining.

The saved file holds the resolved config, so the test split is regenerated exactly as in training
(same task config and seed). :func:`test_module` tests one task config; a caller may pass another
(e.g. a different ``seq_len``) to test the same weights elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from seqbench.config import RunConfig, TrainConfig, apply_overrides
from seqbench.errors import UserError
from seqbench.registry import Registries, load_target


def config_from_json(registries: Registries, text: str) -> RunConfig:
    """A RunConfig back from its ``to_json()`` (a row's ``config_json``), validated like a new one."""
    d = json.loads(text)
    model_spec = registries.models.get(d["model"])
    task_spec = registries.tasks.get(d["task"])
    if d["task_version"] != task_spec.version:
        raise UserError(f"the model was trained on {d['task']} version {d['task_version']}, but the installed "
                        f"task is version {task_spec.version}: its test split is no longer the same")
    return RunConfig(
        model=d["model"], variant=d["variant"], task=d["task"], task_version=d["task_version"],
        preset=d["preset"], seed=d["seed"], precision=d["precision"],
        model_config=apply_overrides(load_target(model_spec.config), "model", d["model_config"]),
        task_config=apply_overrides(load_target(task_spec.config), "task", d["task_config"]),
        train=apply_overrides(TrainConfig, "train", d["train"]))


def test_module(registries: Registries, config: RunConfig, state_dict: dict[str, Any], accelerator: str,
                task_config: Any = None) -> dict[str, float]:
    """Test metrics of the weights ``state_dict`` (of ``config``'s model) on ``task_config``'s test split
    (default: the config's own)."""
    import lightning as L

    from seqbench.lit import SeqbenchModule
    from seqbench.runner import _quiet_lightning, _restore_deterministic_mode, build_data_and_model

    if task_config is not None:
        config = dataclasses.replace(config, task_config=task_config)
    data, info, module = build_data_and_model(registries, config)
    module.load_state_dict(state_dict)
    lit = SeqbenchModule(module, info, config.train)
    with _quiet_lightning(), _restore_deterministic_mode():
        trainer = L.Trainer(accelerator=accelerator, devices=1, precision=config.precision, logger=False,
                            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                            deterministic=accelerator == "cpu")
        trainer.test(lit, datamodule=data, verbose=False)
    # lambda is the penalty weight of the last training step: no property of the weights under test
    return {name: value for name, value in lit.test_metrics.items() if name != "lambda"}


def evaluate_saved_model(registries: Registries, results_dir: Path, run_id: str, device: str = "auto",
                         threads: int | None = None) -> list[dict[str, Any]]:
    """Test a saved model on its test split; write one row per length tested to
    ``<results>/evals/<run_id>-L<seq_len>.parquet`` and return the rows."""
    import pyarrow as pa

    from seqbench.checkpoints import load_model_file
    from seqbench.results import atomic_write_table
    from seqbench.runner import pick_accelerator
    from seqbench.threads import apply_threads

    saved = load_model_file(results_dir, run_id)
    config = config_from_json(registries, saved["config_json"])
    accelerator = pick_accelerator(device)
    apply_threads(threads)
    metrics = test_module(registries, config, saved["state_dict"], accelerator)
    seq_len = getattr(config.task_config, "seq_len", None)
    row = {"run_id": run_id, "seq_len": seq_len, "evaluated_at": dt.datetime.now(dt.timezone.utc), **metrics}
    atomic_write_table(pa.Table.from_pylist([row]),
                       Path(results_dir) / "evals" / f"{run_id}-L{seq_len}.parquet")
    return [row]
