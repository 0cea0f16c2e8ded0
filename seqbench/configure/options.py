"""Run-time options (where and how to run, not what): :class:`RunOptions`, and every check of them in one place,
made before any work.

``run``, ``sweep`` and ``bench`` call these before the first step of training or measuring, so a
mistake in ``--seed``, ``--device``, ``--devices``, ``--strategy``, ``--num-nodes``, ``--precision`` or
``--results`` is one line and exit 2, never a traceback after minutes of training or a ``failed`` row
in a sweep. The trainer settings are checked by Lightning itself: a Trainer is built with them (it
starts nothing), so every rule Lightning has is applied without being copied here.

``config`` imports this module, and plugins import ``config`` through :mod:`seqbench.api`, so torch and
Lightning are imported inside the functions that use them (the import rule in ``seqbench/__init__.py``).
"""

from __future__ import annotations

import difflib
import logging
import os
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's seed range (torch takes more): L.seed_everything seeds both


@dataclass(frozen=True)
class RunOptions:
    """How to run (not part of a run's identity): where, on what, and the trainer's scale-out."""

    results_dir: Path = Path("results")
    device: str = "auto"  # auto | cpu | cuda
    devices: str = "1"  # Lightning's devices (a count, a list, or "auto")
    strategy: str = "auto"
    num_nodes: int = 1
    progress: bool = True
    probes: tuple[str, ...] = ()  # seqbench.train.probes names, e.g. ("rank",): extra curve columns
    callbacks: tuple[Any, ...] = ()  # extra Lightning callbacks (e.g. a benchmark's step clock)
    param_budget: int | None = None  # --params N the model's width was solved for (recorded in the row)
    eval_lengths: tuple[int, ...] = ()  # --eval-lengths: test again at these lengths (<results>/evals/)
    loggers: tuple[str, ...] = ()  # seqbench.train.tracking.LOGGERS names, written under <results>/logs/
    checkpoint_every: int | None = None  # optimizer steps between checkpoints; None: no checkpoints
    keep_checkpoints: int = 2  # the latest k checkpoints are kept
    resume: bool = False  # continue from the configuration's last checkpoint (UserError if it has none)
    save_model: bool = False  # keep the final weights under <results>/models/<run_id>.pt
    threads: int | None = None  # torch threads (None: seqbench.train.threads.available_cores())


def pick_accelerator(device: str) -> str:
    """``--device`` as Lightning's accelerator: ``auto`` is CUDA when torch sees a device, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}: choose auto, cpu or cuda")
    return device


def device_name(accelerator: str) -> str:
    """The row's ``device``: the GPU's name, or the CPU with the threads torch uses."""
    import torch

    if accelerator == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


def git_sha() -> str | None:
    """The checkout's commit (the row's ``git_sha``), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= SEED_MAX:
        raise UserError(f"bad {flag} {seed}: a seed must be an integer from 0 to {SEED_MAX} (numpy's range)")


def path_option(text: str, flag: str = "--results") -> Path:
    """A path option as a Path; an empty one is a mistake (``Path("")`` would silently be the cwd)."""
    if not str(text).strip():
        raise UserError(f"{flag} is empty: give a path")
    return Path(text).expanduser()


def check_readable_results(folder: Path, flag: str = "--results") -> None:
    """A folder to read results from must exist (reading never creates it)."""
    if not folder.exists():
        raise UserError(f"{flag} {folder} does not exist: pass the folder that `seqbench run`, `sweep` or "
                        "`bench` wrote (default: results)")
    if not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder: pass the results folder")


def check_writable_dir(folder: Path, flag: str = "--results", subdirs: tuple[str, ...] = ()) -> None:
    """Fail now, not after training, if ``folder`` (and its existing ``subdirs``) cannot take new files.

    The check creates what is missing and a temp file in it, then removes everything it created, so
    a mistake leaves the file system as it was.
    """
    missing = []  # folders that do not exist yet, deepest first
    existing = folder
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {folder}: {existing} is a file, not a folder; choose another {flag}")
    for sub in subdirs:
        if (folder / sub).exists() and not (folder / sub).is_dir():
            raise UserError(f"{flag} {folder}: {folder / sub} is a file, not a folder; choose another {flag}")
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        for target in (folder, *(folder / sub for sub in subdirs if (folder / sub).is_dir())):
            fd, probe = tempfile.mkstemp(dir=target, prefix=".seqbench-write-check-")
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to {flag} {folder}: {exc.strerror or exc}; choose a folder you can "
                        "write to") from None
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                break  # no longer empty (another process writes there): leave it and the folders above it


def lightning_devices(text: str) -> int | list[int] | str:
    """``--devices`` as Lightning takes it: ``auto``, a count (``2``) or device indices (``0,1``)."""
    text = str(text).strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            indices = [int(part) for part in text.split(",") if part.strip()]
            if indices and min(indices) >= 0 and len(set(indices)) == len(indices):
                return indices
        elif int(text) >= 1:
            return int(text)
    except ValueError:
        pass
    raise UserError(f"bad --devices {text!r}: expected a count of at least 1 (e.g. 2), distinct device indices "
                    "(e.g. 0,1) or auto")


def check_strategy(strategy: str) -> None:
    from lightning.pytorch.strategies import StrategyRegistry

    known = ["auto", *StrategyRegistry.available_strategies()]
    if strategy.lower() not in known:
        close = difflib.get_close_matches(strategy.lower(), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        main = [name for name in known if "find_unused" not in name]  # the variants of ddp* would fill the line
        raise UserError(f"unknown --strategy {strategy!r}: {hint}Lightning's strategies include {', '.join(main)}")
    # seqbench reads a run's metrics and curves from the module of the process it launched, and those
    # never come back from spawned or forked children (the row would say ``ok`` with no metrics)
    if strategy in StrategyRegistry and StrategyRegistry[strategy]["init_params"].get("start_method") in ("spawn",
                                                                                                        "fork"):
        raise UserError(f"--strategy {strategy} trains in spawned or forked processes whose results seqbench "
                        "cannot read back; use --strategy ddp (it runs the command once per rank)")


def cluster_environment() -> str | None:
    """The name of the multi-node environment Lightning would detect here, or None."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for environment in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment, MPIEnvironment):
        try:
            if environment.detect():
                return environment.__name__
        except Exception:  # a detector whose optional package is broken detects nothing
            continue
    if all(os.environ.get(name) for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK")):
        return "LightningEnvironment"  # set by hand on every node
    return None


def check_trainer_settings(options: RunOptions, precision: str) -> str:
    """Device, devices, strategy, nodes and precision, checked together; returns the accelerator."""
    accelerator = pick_accelerator(options.device)
    devices = lightning_devices(options.devices)
    if options.num_nodes < 1:
        raise UserError(f"bad --num-nodes {options.num_nodes}: it must be at least 1")
    if options.num_nodes > 1 and cluster_environment() is None:
        # without one, Lightning's default environment waits for the other nodes to connect: forever
        raise UserError(f"--num-nodes {options.num_nodes} needs a multi-node launch (srun under SLURM, torchrun, "
                        "LSF, MPI, or MASTER_ADDR, MASTER_PORT and NODE_RANK set on every node); none is detected "
                        "here, so the run would wait forever for the other nodes. Use --num-nodes 1 on one machine")
    check_strategy(options.strategy)
    if accelerator == "cpu" and isinstance(devices, list):
        raise UserError(f"bad --devices {options.devices!r}: on the CPU --devices is a process count (e.g. 2); "
                        "device indices are for --device cuda")
    chosen = _lightning_precision(accelerator, devices, options, precision)
    if chosen != precision:
        raise UserError(f"--precision {precision} is not available on {accelerator} (Lightning would run {chosen} "
                        f"instead); pass --precision {chosen}" + (" or --device cuda" if accelerator == "cpu" else ""))
    return accelerator


def _lightning_precision(accelerator: str, devices: Any, options: RunOptions, precision: str) -> str:
    """Build (and drop) a Trainer with these settings: Lightning's own checks. Returns the precision it chose."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)  # the Trainer's start-up notes are noise for a check
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=options.strategy,
                                num_nodes=options.num_nodes, precision=precision, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        settings = (f"--device {options.device} --devices {options.devices} --strategy {options.strategy} "
                    f"--num-nodes {options.num_nodes} --precision {precision}")
        raise UserError(f"Lightning refuses {settings}: {first}") from None
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    return str(trainer.precision)


def check_run_options(options: RunOptions, precision: str, writable: bool = True) -> str:
    """Everything ``run`` and ``sweep`` need before the first step; returns the accelerator."""
    accelerator = check_trainer_settings(options, precision)
    if writable:
        check_writable_dir(Path(options.results_dir), "--results", subdirs=("runs", "curves"))
    return accelerator
