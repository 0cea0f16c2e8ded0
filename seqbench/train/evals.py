"""Testing a trained model at other sequence lengths (``--eval-lengths``): ``<results>/evals/<run_id>.parquet``.

Each length gets a fresh test split, generated from the run's seed with the task's length key
(``TaskSpec.length_key``: mqar ``seq_len`` with the same number of pairs, assoc_recall
``input_seq_len``, listops ``max_len``, ring_distance ``num_nodes``) set to that length; everything
else in the task's config stays as trained. One row per length: ``ok`` with the test metrics (and the
hard-gated pass's ``*_hard`` for gated models), or ``unsupported`` when the model cannot run there
(learned positions shorter than the length, or a task whose classes change with its length), or
``failed`` with the error.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L

from seqbench.capabilities import max_seq_len
from seqbench.configure.config import RunConfig
from seqbench.configure.options import pick_accelerator
from seqbench.configure.resolve import task_info
from seqbench.errors import UserError
from seqbench.registry import Registries
from seqbench.results import Status, write_evals
from seqbench.train.data import build_task_data
from seqbench.train.lit import SeqbenchModule
from seqbench.train.trainer_context import quiet_lightning


def length_key(registries: Registries, task: str) -> str:
    """The task's length key; UserError for a task that declares none."""
    key = registries.tasks.get(task).length_key
    if key is None:
        raise UserError(f"task {task!r} declares no length key (TaskSpec.length_key), so --eval-lengths cannot "
                        "change its length; drop --eval-lengths for it")
    return key


def parse_lengths(text: str) -> tuple[int, ...]:
    """``"128,256"`` -> (128, 256): positive integers, each once."""
    try:
        lengths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"bad --eval-lengths {text!r}: expected comma-separated lengths, e.g. 128,256") from None
    if not lengths:
        raise UserError(f"bad --eval-lengths {text!r}: expected distinct positive lengths, e.g. 128,256")
    return check_lengths(lengths)


def check_lengths(lengths: Iterable[int]) -> tuple[int, ...]:
    """Evaluation lengths (from the flag or an experiment file): positive integers, each once."""
    lengths = tuple(lengths)
    if any(n <= 0 for n in lengths) or len(set(lengths)) != len(lengths):
        raise UserError(f"bad --eval-lengths {','.join(map(str, lengths))}: expected distinct positive lengths, "
                        "e.g. 128,256")
    return lengths


def length_configs(registries: Registries, config: RunConfig, lengths: Iterable[int]) -> dict[int, Any]:
    """The task config at each length, validated (UserError before any work for an impossible one)."""
    key = length_key(registries, config.task)
    out = {}
    for length in lengths:
        try:
            out[length] = dataclasses.replace(config.task_config, **{key: length})
        except UserError as exc:
            raise UserError(f"--eval-lengths {length} does not fit task {config.task!r}: {exc}") from None
    return out


def evaluate_lengths(registries: Registries, config: RunConfig, module: Any, lengths: Iterable[int],
                     results_dir: Path, run_id: str, device: str = "auto") -> list[dict[str, Any]]:
    """Test ``module`` (trained under ``config``) at each length; write and return one row per length."""
    task_spec = registries.tasks.get(config.task)
    key = length_key(registries, config.task)
    where = {"length_key": key, "trained_len": getattr(config.task_config, key)}
    trained = task_info(task_spec, build_task_data(task_spec, config.task_config, seed=config.seed, batch_size=1))
    rows = []
    for length, task_config in length_configs(registries, config, lengths).items():
        try:
            rows.append({"seq_len": length, **where,
                         **_evaluate(task_spec, config, task_config, trained, module, device)})
        except Exception as exc:  # one length's failure is recorded; the run and the other lengths stand
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            rows.append({"seq_len": length, **where, "status": Status.FAILED, "error": error[:2000]})
    write_evals(results_dir, run_id, rows)
    return rows


def _evaluate(task_spec, config: RunConfig, task_config: Any, trained: Any, module: Any, device: str) -> dict:
    data = build_task_data(task_spec, task_config, seed=config.seed, batch_size=config.train.batch_size)
    info = task_info(task_spec, data)
    if (info.vocab_size, info.num_classes, info.target) != (trained.vocab_size, trained.num_classes, trained.target):
        return {"status": Status.UNSUPPORTED,
                "error": f"the task's vocabulary or classes change with its length ({trained.num_classes} classes "
                         f"trained, {info.num_classes} at this length): the trained head cannot score it"}
    limit = max_seq_len(module)
    if limit is not None and info.seq_len > limit:
        return {"status": Status.UNSUPPORTED,
                "error": f"the model runs on at most {limit} tokens (learned positions); this length needs "
                         f"{info.seq_len}"}
    data.split_data("test")  # only the test split at this length (not the training one)
    lit = SeqbenchModule(module, info, config.train)
    with quiet_lightning():
        trainer = L.Trainer(accelerator=pick_accelerator(device), devices=1, precision=config.precision,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.test(lit, dataloaders=data.test_dataloader(), verbose=False)
    return {"status": Status.OK, "error": None, **lit.test_metrics}
