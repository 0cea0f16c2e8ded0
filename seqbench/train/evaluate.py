"""``seqbench eval RUN_ID``: test a model saved with ``run --save-model`` again, without retraining.

The saved file holds the resolved config, so each test split is regenerated exactly as the run's own
(same task config and seed) at the training length, or at other lengths (``--eval-lengths``, through
:func:`seqbench.train.evals.evaluate_lengths`, the same rows a run's own ``--eval-lengths`` writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.configure.options import pick_accelerator
from seqbench.configure.replay import config_from_json
from seqbench.configure.resolve import planned_task_info
from seqbench.registry import Registries, load_spec_target
from seqbench.train.checkpoints import load_model_file
from seqbench.train.evals import evaluate_lengths, length_key
from seqbench.train.threads import apply_threads


def evaluate_saved_model(registries: Registries, results_dir: Path, run_id: str, lengths: tuple[int, ...] = (),
                         device: str = "auto", threads: int | None = None) -> list[dict[str, Any]]:
    """Test a saved model at ``lengths`` (default: the length it was trained at); the rows go to
    ``<results>/evals/<run_id>.parquet`` beside any earlier ones, and are returned."""
    saved = load_model_file(results_dir, run_id)
    config = config_from_json(registries, saved["config_json"], where=f"the saved model of run {run_id}")
    accelerator = pick_accelerator(device)
    apply_threads(threads)
    lengths = lengths or (getattr(config.task_config, length_key(registries, config.task)),)
    info = planned_task_info(registries.tasks.get(config.task), config.task_config, config.seed)
    module = load_spec_target(registries.models.get(config.model), "build")(config.model_config, info)
    module.load_state_dict(saved["state_dict"])
    return evaluate_lengths(registries, config, module, lengths, results_dir, run_id, device=accelerator)
