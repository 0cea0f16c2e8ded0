"""``seqbench eval RUN_ID``: test a model saved with ``run --save-model`` again, without retraining.

The saved file holds the resolved config, so each test split is regenerated exactly as the run's own
(same task config and seed) at the training length, or at other lengths (``--eval-lengths``, through
:func:`seqbench.train.evals.evaluate_lengths`, the same rows a run's own ``--eval-lengths`` writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.configure.options import check_writable_dir, pick_accelerator
from seqbench.configure.replay import config_from_json
from seqbench.configure.resolve import planned_task_info
from seqbench.errors import UserError
from seqbench.registry import Registries, load_spec_target
from seqbench.results import EVALS, evals_path, read_run_evals
from seqbench.train.checkpoints import load_model_file
from seqbench.train.evals import evaluate_lengths, length_key
from seqbench.train.threads import apply_threads


def evaluate_saved_model(registries: Registries, results_dir: Path, run_id: str, lengths: tuple[int, ...] = (),
                         device: str = "auto", threads: int | None = None) -> list[dict[str, Any]]:
    """Test a saved model at ``lengths`` (default: the length it was trained at); the rows go to
    ``<results>/evals/<run_id>.parquet`` beside any earlier ones, and are returned.

    Everything that would stop it from writing is checked first: the model file loads, the folder takes
    new files, an earlier evals file reads."""
    saved = load_model_file(results_dir, run_id)
    check_writable_dir(Path(results_dir), "--results", subdirs=(EVALS.folder,))
    try:
        read_run_evals(results_dir, run_id)
    except Exception as exc:
        raise UserError(f"the earlier evaluations {evals_path(results_dir, run_id)} do not read "
                        f"({type(exc).__name__}: {exc}); move that file away and run eval again") from None
    config = config_from_json(registries, saved["config_json"], where=f"the saved model of run {run_id}")
    accelerator = pick_accelerator(device)
    apply_threads(threads)
    lengths = lengths or (getattr(config.task_config, length_key(registries, config.task)),)
    info = planned_task_info(registries.tasks.get(config.task), config.task_config, config.seed)
    module = load_spec_target(registries.models.get(config.model), "build")(config.model_config, info)
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:  # weights of another shape or other names: not this config's model
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"the saved model of run {run_id} does not fit its own config ({first}); the file is "
                        "damaged or from another seqbench: re-run the run with --save-model") from None
    return evaluate_lengths(registries, config, module, lengths, results_dir, run_id, device=accelerator)
