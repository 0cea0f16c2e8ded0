"""One run: train and test a resolved configuration under Lightning, and write its result row."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
import uuid
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import LearningRateMonitor

from seqbench import __version__
from seqbench.capabilities import kernels_used, layer_probes
from seqbench.configure.budget import state_size
from seqbench.configure.config import RunConfig
from seqbench.configure.options import (
    RunOptions,
    check_strategy,
    device_name,
    git_sha,
    lightning_devices,
    pick_accelerator,
)
from seqbench.configure.resolve import task_info
from seqbench.errors import UserError
from seqbench.registry import Registries, load_spec_target
from seqbench.results import Status, write_run
from seqbench.train.checkpoints import (
    AtomicCheckpointIO,
    ResumeState,
    WallClock,
    checkpoint_callback,
    checkpoint_dir,
    checkpoint_run_id,
    latest_checkpoint,
    save_model,
)
from seqbench.train.data import build_task_data, chance_level
from seqbench.train.evals import evaluate_lengths
from seqbench.train.interrupt import StopOnSignal, interruptible_fit
from seqbench.train.lit import SeqbenchModule, ShareCores, ThroughputMeter
from seqbench.train.preflight import check_before_training
from seqbench.train.progress import RunProgress
from seqbench.train.stopping import early_stopping, row_columns
from seqbench.train.threads import CoreShare, apply_threads, policy_decides
from seqbench.train.tracking import LiveCurve, build_loggers, check_loggers, close_loggers
from seqbench.train.trainer_context import quiet_lightning, restore_deterministic_mode


def row_identity(config: RunConfig) -> dict[str, Any]:
    """The columns every run row has, finished or not: what ran, with which software, and when."""
    started = dt.datetime.now(dt.timezone.utc)
    return {
        "run_id": f"{started:%Y%m%d-%H%M%S}-{config.model}-{config.task}-s{config.seed}-{uuid.uuid4().hex[:6]}",
        "model": config.model, "variant": config.variant, "task": config.task,
        "task_version": config.task_version, "preset": config.preset, "seed": config.seed,
        "seqbench_version": __version__, "torch_version": torch.__version__, "git_sha": git_sha(),
        "config_hash": config.config_hash(), "config_json": config.to_json(), "started_at": started,
    }


def build_data_and_model(registries: Registries, config: RunConfig):
    """The task's data module (set up) and the model's plain nn.Module, seeded."""
    L.seed_everything(config.seed, workers=True, verbose=False)

    task_spec = registries.tasks.get(config.task)
    data = build_task_data(task_spec, config.task_config, seed=config.seed, batch_size=config.train.batch_size)
    data.setup()
    info = task_info(task_spec, data)
    module = load_spec_target(registries.models.get(config.model), "build")(config.model_config, info)
    return data, info, module


def run(registries: Registries, config: RunConfig, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Train and test one configuration; write and return its result row (``path`` None on the other
    ranks of a distributed run: rank 0 writes it).

    With ``options.resume`` training continues from the configuration's last checkpoint (same run id,
    same curve); a finished run's checkpoints are removed once its row is written, since the row is
    the result and a stale checkpoint would let ``--resume`` write it twice.
    """
    accelerator = pick_accelerator(options.device)
    check_strategy(options.strategy)  # also here: run() is the Python API, not only the CLI's
    check_loggers(options.loggers)
    check_before_training(registries, config, options)  # also here: run() is the Python API, not only the CLI's
    folder = checkpoint_dir(options.results_dir, config.config_hash())
    resume_from = latest_checkpoint(folder) if options.resume else None
    if options.resume and resume_from is None:
        raise UserError(f"--resume: no checkpoint of config {config.config_hash()} in {folder}; run it without "
                        "--resume (with --checkpoint-every N to write checkpoints)")
    threads = apply_threads(options.threads)
    identity = row_identity(config)
    if resume_from is not None:
        identity["run_id"] = checkpoint_run_id(resume_from) or identity["run_id"]
    clock = WallClock(started=time.perf_counter())  # with the seconds of earlier segments once resumed
    data, info, module = build_data_and_model(registries, config)
    if "rank" in options.probes and layer_probes(module) is None:
        raise UserError(f"--probe rank needs a model with probe_layers(); {config.model!r} has none")
    lit = SeqbenchModule(module, info, config.train, probes=options.probes, model_name=config.model,
                         run_id=identity["run_id"])
    meter = ThroughputMeter()
    callbacks: list[L.Callback] = [ResumeState(), clock, meter, LiveCurve(options.results_dir, identity["run_id"]),
                                   *options.callbacks]
    loggers = build_loggers(options.loggers, options.results_dir, identity["run_id"], config.to_dict())
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if options.checkpoint_every is not None:
        callbacks.append(checkpoint_callback(folder, options.checkpoint_every, options.keep_checkpoints))
    if options.progress:
        callbacks.append(RunProgress(config.train.max_steps, info.metric))
    stoppers = early_stopping(config.train, info.metric)  # none unless train.stop_at / train.patience ask
    callbacks += stoppers
    # SIGTERM/SIGINT: a checkpoint of the step reached (with checkpoints on), then no row (seqbench.train.interrupt);
    # after the stoppers, so that a checkpoint saved after an evaluation holds their counts of it
    callbacks.append(StopOnSignal(folder if options.checkpoint_every is not None else None))
    # under the policy, concurrent seqbench runs on this machine divide its cores (seqbench.train.threads)
    share = CoreShare(threads) if accelerator == "cpu" and policy_decides(options.threads) else None
    if share is not None:
        sharing = ShareCores(share)
        callbacks.append(sharing)
    with quiet_lightning(), restore_deterministic_mode(), share or contextlib.nullcontext():
        trainer = L.Trainer(
            accelerator=accelerator, devices=lightning_devices(options.devices), strategy=options.strategy,
            num_nodes=options.num_nodes, precision=config.precision, max_steps=config.train.max_steps,
            val_check_interval=config.train.eval_every, check_val_every_n_epoch=None,
            limit_val_batches=config.train.eval_batches, num_sanity_val_steps=0,
            gradient_clip_val=config.train.grad_clip or None, logger=loggers or False,
            log_every_n_steps=min(50, config.train.eval_every),
            enable_checkpointing=options.checkpoint_every is not None,
            enable_model_summary=False, enable_progress_bar=False, callbacks=callbacks,
            deterministic=accelerator == "cpu",
            use_distributed_sampler=False,  # the training order shards itself (seqbench.train.checkpoints.EpochBatches)
            plugins=[AtomicCheckpointIO()],
        )
        with interruptible_fit(lambda: lit.finite_steps, folder if options.checkpoint_every is not None else None):
            trainer.fit(lit, datamodule=data, ckpt_path=resume_from, weights_only=True)
        if not lit.diverged:
            # the final validation pass reads the whole split (curve points read eval_batches of it);
            # it and the test use the last step's weights
            trainer.limit_val_batches = 1.0
            lit.final_validation = True
            trainer.validate(lit, datamodule=data, verbose=False)
            trainer.test(lit, datamodule=data, verbose=False)
    test = lit.test_metrics
    row: dict[str, Any] = {
        **identity, "status": Status.DIVERGED if lit.diverged else Status.OK, "error": None, **lit.val_final, **test,
        **row_columns(lit.diverged, stoppers, lit.curve, info.metric), "tokens_per_sec": meter.tokens_per_sec,
        "n_params": sum(p.numel() for p in module.parameters()), "param_budget": options.param_budget,
        "state_size": state_size(registries.models.get(config.model), config.model_config, info),
        "steps": lit.finite_steps, "wall_time_s": clock.seconds(),
        "device": device_name(accelerator), "threads": sharing.threads if share is not None else threads,
        "kernels": kernels_used(module),
        "data_fingerprint": data.data_fingerprint(),
        # on the test split's scored labels: a task may score more positions in training (assoc_recall
        # scores every next token there, only the answer at test), and accuracy is the test's
        "chance": chance_level(data.split_data("test")["targets"], info.ignore_index),
    }
    # Under DDP every rank gets here with the same (rank-reduced) metrics; one run is one row, rank 0's.
    if not trainer.is_global_zero:
        close_loggers(loggers)
        row["path"] = None
        return row
    if options.eval_lengths and not lit.diverged:
        evaluate_lengths(registries, config, module, options.eval_lengths, options.results_dir, identity["run_id"],
                         device=accelerator)  # before the row: a row exists only when its evaluations do
        row["wall_time_s"] = clock.seconds()
    if options.save_model:
        save_model(options.results_dir, identity["run_id"], module, identity["config_json"])
    row["path"] = str(write_run(options.results_dir, row, lit.curve))
    close_loggers(loggers)
    shutil.rmtree(folder, ignore_errors=True)
    return row


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0, from the environment a launcher sets (Lightning's DDP re-runs
    the command line for each other rank, srun and torchrun start every rank): known before any Trainer."""
    return rank_zero_only.rank == 0


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (a run's or a benchmark's row then says ``oom``)."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
