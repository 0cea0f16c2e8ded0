"""The checks of a run that need no training, made before the CLI prints the config and before the
runner builds anything: loggers installed, checkpoint and thread settings, something to ``--resume``,
and the memory the model and data would take (:mod:`seqbench.configure.budget`), so that a mistake is
one line and exit 2, not a page of resolved config and then an error, or an allocation failure."""

from __future__ import annotations

from seqbench.configure.budget import check_fits_memory, estimate_memory
from seqbench.configure.config import RunConfig
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import planned_task_info
from seqbench.errors import UserError
from seqbench.registry import Registries
from seqbench.train.checkpoints import checkpoint_dir, latest_checkpoint
from seqbench.train.threads import check_threads
from seqbench.train.tracking import check_loggers


def check_checkpoint_settings(checkpoint_every: int | None, keep: int) -> None:
    if checkpoint_every is not None and checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1 step, got {checkpoint_every}")
    if keep < 1:
        raise UserError(f"--keep-checkpoints must be >= 1, got {keep}")


def check_memory(registries: Registries, config: RunConfig) -> None:
    """Refuse a configuration whose parameters and data alone exceed this machine's memory."""
    task_spec = registries.tasks.get(config.task)
    info = planned_task_info(task_spec, config.task_config, config.seed)
    estimate = estimate_memory(registries.models.get(config.model), config.model_config, config.task_config, info)
    check_fits_memory(f"{config.model} on {config.task}", estimate)


def check_before_training(registries: Registries, config: RunConfig, options: RunOptions) -> None:
    """Every check of ``run`` that needs no training (UserError on the first that fails)."""
    check_loggers(options.loggers)
    check_checkpoint_settings(options.checkpoint_every, options.keep_checkpoints)
    check_threads(options.threads)
    if options.resume:
        folder = checkpoint_dir(options.results_dir, config.config_hash())
        if latest_checkpoint(folder) is None:
            raise UserError(f"--resume: no checkpoint of config {config.config_hash()} in {folder} that loads; "
                            "run it without --resume (with --checkpoint-every N to write checkpoints)")
    check_memory(registries, config)
