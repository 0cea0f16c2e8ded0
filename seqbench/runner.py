"""Resolve a run's config, train and test it under Lightning, and write its result row."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench import __version__
from seqbench.config import RunConfig, TrainConfig, apply_overrides, parse_overrides
from seqbench.errors import UserError
from seqbench.registry import Registries, check_preset, load_spec_target


@dataclass(frozen=True)
class RunOptions:
    """How to run (not part of a run's identity): where, on what, and the trainer's scale-out."""

    results_dir: Path = Path("results")
    device: str = "auto"  # auto | cpu | cuda
    devices: str = "1"  # Lightning's devices (a count, a list, or "auto")
    strategy: str = "auto"
    num_nodes: int = 1
    progress: bool = True
    probes: tuple[str, ...] = ()  # seqbench.probes names, e.g. ("rank",): extra curve columns
    callbacks: tuple[Any, ...] = ()  # extra Lightning callbacks (e.g. a benchmark's step clock)
    param_budget: int | None = None  # --params N the model's width was solved for (recorded in the row)
    eval_lengths: tuple[int, ...] = ()  # --eval-lengths: test again at these lengths (<results>/evals/)
    loggers: tuple[str, ...] = ()  # seqbench.tracking.LOGGERS names, written under <results>/logs/
    checkpoint_every: int | None = None  # optimizer steps between checkpoints; None: no checkpoints
    keep_checkpoints: int = 2  # the latest k checkpoints are kept
    resume: bool = False  # continue from the configuration's last checkpoint (UserError if it has none)
    save_model: bool = False  # keep the final weights under <results>/models/<run_id>.pt
    threads: int | None = None  # torch threads (None: seqbench.threads.available_cores())


def resolve_task_config(task_spec, preset: str, task_overrides: dict[str, str]) -> Any:
    """The task's config dataclass: defaults, then the preset's task settings, then ``--set task.*``."""
    return apply_overrides(load_spec_target(task_spec, "config"), "task",
                           task_spec.presets.get(preset, {}).get("task", {}), task_overrides)


def resolve_model_config(model_spec, preset: str, variant: str, model_overrides: dict[str, str]) -> Any:
    """The model's config dataclass: defaults, the preset's model settings, the variant, ``--set model.*``."""
    model_cls = load_spec_target(model_spec, "config")
    variant_layer = {"variant": variant} if "variant" in {f.name for f in dataclasses.fields(model_cls)} else {}
    return apply_overrides(model_cls, "model", model_spec.presets.get(preset, {}), variant_layer, model_overrides)


def planned_task_info(task_spec, task_config: Any, seed: int = 0) -> Any:
    """The task's TaskInfo for ``task_config`` (what a model is built for), without generating its splits."""
    from seqbench.data import build_task_data, task_info

    return task_info(task_spec, build_task_data(task_spec, task_config, seed=seed, batch_size=1))


def resolve_run_config(registries: Registries, model: str, task: str, *, variant: str | None = None,
                       preset: str = "default", seed: int = 0, overrides: list[str] = (),
                       precision: str = "32-true", params: int | None = None,
                       note: Callable[[str], None] | None = None) -> RunConfig:
    """Names, preset and ``--set`` overrides -> a validated RunConfig. Raises UserError.

    ``params``: solve the model's width for this many parameters (seqbench.budget); ``note`` is told
    when no width comes within the tolerance."""
    model_spec = registries.models.get(model)
    task_spec = registries.tasks.get(task)
    check_preset(preset)
    if variant is None:
        variant = model_spec.variants[0]
    elif variant not in model_spec.variants:
        raise UserError(f"model {model!r} has no variant {variant!r}: choose one of {', '.join(model_spec.variants)}")
    if not (model_spec.inputs & task_spec.views):
        raise UserError(
            f"model {model!r} takes {', '.join(sorted(model_spec.inputs))} input, but task {task!r} offers "
            f"{', '.join(sorted(task_spec.views))}; pick a model and task with an input view in common"
        )
    sets = parse_overrides(list(overrides))
    model_config = resolve_model_config(model_spec, preset, variant, sets["model"])
    task_config = resolve_task_config(task_spec, preset, sets["task"])
    if params is not None:
        from seqbench.budget import solve_width

        if model_spec.width_key in sets["model"]:
            raise UserError(f"--params solves model.{model_spec.width_key} for {model!r}; drop "
                            f"--set model.{model_spec.width_key} or --params")
        solved = solve_width(model_spec, model_config, planned_task_info(task_spec, task_config, seed), params)
        if note is not None and solved.warning(model) is not None:
            note(solved.warning(model))
        model_config = solved.config
    return RunConfig(
        model=model, variant=variant, task=task, task_version=task_spec.version, preset=preset, seed=seed,
        model_config=model_config, task_config=task_config,
        train=apply_overrides(TrainConfig, "train", task_spec.presets.get(preset, {}).get("train", {}), sets["train"]),
        precision=precision,
    )


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pick_accelerator(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}: choose auto, cpu or cuda")
    return device


def row_identity(config: RunConfig) -> dict[str, Any]:
    """The columns every run row has, finished or not: what ran, with which software, and when."""
    import torch

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
    import lightning as L

    L.seed_everything(config.seed, workers=True, verbose=False)
    from seqbench.data import build_task_data, task_info

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
    import shutil

    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor

    from seqbench.budget import state_size
    from seqbench.capabilities import kernels_used, layer_probes
    from seqbench.checkpoints import (
        ResumeState,
        checkpoint_callback,
        checkpoint_dir,
        checkpoint_run_id,
        latest_checkpoint,
        save_model,
    )
    from seqbench.describe import chance_level
    from seqbench.evals import evaluate_lengths
    from seqbench.lit import SeqbenchModule, ShareCores, ThroughputMeter
    from seqbench.options import check_strategy, lightning_devices
    from seqbench.progress import RunProgress
    from seqbench.results import Status, write_run
    from seqbench.threads import CoreShare, apply_threads, policy_decides
    from seqbench.tracking import LiveCurve, build_loggers, check_loggers, close_loggers

    accelerator = pick_accelerator(options.device)
    check_strategy(options.strategy)  # also here: run() is the Python API, not only the CLI's
    check_loggers(options.loggers)
    folder = checkpoint_dir(options.results_dir, config.config_hash())
    resume_from = latest_checkpoint(folder) if options.resume else None
    if options.resume and resume_from is None:
        raise UserError(f"--resume: no checkpoint of config {config.config_hash()} in {folder}; run it without "
                        "--resume (with --checkpoint-every N to write checkpoints)")
    threads = apply_threads(options.threads)
    identity = row_identity(config)
    if resume_from is not None:
        identity["run_id"] = checkpoint_run_id(resume_from) or identity["run_id"]
    t0 = time.perf_counter()
    data, info, module = build_data_and_model(registries, config)
    if "rank" in options.probes and layer_probes(module) is None:
        raise UserError(f"--probe rank needs a model with probe_layers(); {config.model!r} has none")
    lit = SeqbenchModule(module, info, config.train, probes=options.probes, model_name=config.model,
                         run_id=identity["run_id"])
    meter = ThroughputMeter()
    callbacks: list[L.Callback] = [ResumeState(), meter, LiveCurve(options.results_dir, identity["run_id"]),
                                   *options.callbacks]
    loggers = build_loggers(options.loggers, options.results_dir, identity["run_id"], config.to_dict())
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if options.checkpoint_every is not None:
        callbacks.append(checkpoint_callback(folder, options.checkpoint_every, options.keep_checkpoints))
    if options.progress:
        callbacks.append(RunProgress(config.train.max_steps, info.metric))
    # under the policy, concurrent seqbench runs on this machine divide its cores (seqbench.threads)
    share = CoreShare(threads) if accelerator == "cpu" and policy_decides(options.threads) else None
    if share is not None:
        sharing = ShareCores(share)
        callbacks.append(sharing)
    with _quiet_lightning(), _restore_deterministic_mode(), share or contextlib.nullcontext():
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
            use_distributed_sampler=False,  # the training order shards itself (seqbench.checkpoints.EpochBatches)
        )
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
        "tokens_per_sec": meter.tokens_per_sec,
        "n_params": sum(p.numel() for p in module.parameters()), "param_budget": options.param_budget,
        "state_size": state_size(registries.models.get(config.model), config.model_config, info),
        "steps": lit.finite_steps, "wall_time_s": time.perf_counter() - t0,
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
        row["wall_time_s"] = time.perf_counter() - t0
    if options.save_model:
        save_model(options.results_dir, identity["run_id"], module, identity["config_json"])
    row["path"] = str(write_run(options.results_dir, row, lit.curve))
    close_loggers(loggers)
    shutil.rmtree(folder, ignore_errors=True)
    return row


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0, from the environment a launcher sets (Lightning's DDP re-runs
    the command line for each other rank, srun and torchrun start every rank): known before any Trainer."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0


def device_name(accelerator: str) -> str:
    import torch

    if accelerator == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


class _restore_deterministic_mode:
    """Lightning's ``deterministic=True`` switches torch's global flag on and leaves it on; a run must
    not change the process for what comes after it (the next cell of a sweep, a benchmark)."""

    def __enter__(self):
        import torch

        self._before = torch.are_deterministic_algorithms_enabled()
        self._warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        return self

    def __exit__(self, *exc):
        import torch

        torch.use_deterministic_algorithms(self._before, warn_only=self._warn_only)
        return False


class _quiet_lightning:
    """Lightning's start-up chatter (GPU available: ..., tips) is noise next to seqbench's output."""

    def __enter__(self):
        self._level = logging.getLogger("lightning.pytorch").level
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Consider setting `persistent_workers`.*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        # the logged validation metrics are torchmetrics' values, which are already reduced over DDP ranks
        warnings.filterwarnings("ignore", message=".*`self.log\\('val_.*', ..., sync_dist=True\\)`.*")
        # a resumed run's checkpoint folder holds its earlier checkpoints, and its training order resumes
        # mid-epoch through seqbench.checkpoints.ResumeState, not a stateful loader
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        return self

    def __exit__(self, *exc):
        logging.getLogger("lightning.pytorch").setLevel(self._level)
        self._warnings.__exit__(*exc)
        return False
