"""Launchers: where a sweep's cells run. Each takes the sweep's :class:`~seqbench.sweeps.sweep.CellJob` list,
runs every job through :func:`seqbench.sweeps.sweep.execute` somewhere (this machine's processes, Ray tasks,
SLURM jobs) and reports each :class:`~seqbench.sweeps.sweep.CellOutcome` as it arrives. Because every worker
claims its cell first (:mod:`seqbench.sweeps.claims_lock`), launchers of any kind can share a results folder.

Ray and submitit are optional extras; :func:`get_launcher` names the extra to install when one is absent.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from seqbench.errors import UserError
from seqbench.sweeps.launchers.local import LocalLauncher
from seqbench.sweeps.launchers.ray import RayLauncher
from seqbench.sweeps.launchers.slurm import SlurmLauncher, parse_minutes
from seqbench.sweeps.sweep import CellJob, CellOutcome
from seqbench.train.threads import threads_per_job

LAUNCHERS = ("local", "ray", "slurm")
OnDone = Callable[[CellJob, CellOutcome], None]


class Launcher(Protocol):
    """Runs jobs and calls ``on_done`` once per job, in the order they finish, from the calling thread."""

    name: str

    def run(self, jobs: Sequence[CellJob], on_done: OnDone) -> None: ...


@dataclass(frozen=True)
class LaunchSettings:
    """Every launcher's settings, as given on the command line or in an experiment file. Each launcher
    reads its own and ignores the others', so one experiment file can hold settings for several."""

    launcher: str = "local"
    jobs: int = 1  # local: cells at once, each its own process when > 1
    address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"); None starts a local one
    cpus_per_cell: int = 1  # ray and slurm
    gpus_per_cell: float = 0  # ray (fractions allowed) and slurm (whole GPUs)
    slurm_partition: str | None = None
    slurm_time: str = "60"  # minutes, or [D-]H:MM:SS
    slurm_array_parallelism: int = 256  # array tasks running at once
    slurm_folder: str | None = None  # submitit's logs and pickles (default <results>/slurm)
    slurm_cluster: str | None = None  # submitit's cluster: None detects SLURM; "local" runs jobs here (tests)


def _need(module: str, extra: str, launcher: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(f"--launcher {launcher} needs {module}: pip install 'seqbench[{extra}]'")


def check_settings(settings: LaunchSettings) -> None:
    """Every mistake in the settings, and a missing extra, before any cell runs."""
    if settings.launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {settings.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    if settings.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {settings.jobs}")
    if settings.cpus_per_cell < 1:
        raise UserError(f"--cpus-per-cell must be >= 1, got {settings.cpus_per_cell}")
    if not (math.isfinite(settings.gpus_per_cell) and settings.gpus_per_cell >= 0):
        raise UserError(f"--gpus-per-cell must be >= 0, got {settings.gpus_per_cell}")
    if settings.launcher == "ray":
        _need("ray", "ray", "ray")
    if settings.launcher == "slurm":
        _need("submitit", "slurm", "slurm")
        parse_minutes(settings.slurm_time)
        if settings.slurm_array_parallelism < 1:
            raise UserError(f"--slurm-array-parallelism must be >= 1, got {settings.slurm_array_parallelism}")
        if settings.gpus_per_cell != int(settings.gpus_per_cell):
            raise UserError(f"--gpus-per-cell must be a whole number under slurm, got {settings.gpus_per_cell}")


def get_launcher(settings: LaunchSettings, registries, results_dir) -> Launcher:
    """The launcher ``settings`` asks for (checked by :func:`check_settings`)."""
    check_settings(settings)
    if settings.launcher == "ray":
        return RayLauncher(settings.address, settings.cpus_per_cell, settings.gpus_per_cell)
    if settings.launcher == "slurm":
        folder = Path(settings.slurm_folder) if settings.slurm_folder else Path(results_dir) / "slurm"
        return SlurmLauncher(folder, partition=settings.slurm_partition, minutes=parse_minutes(settings.slurm_time),
                             cpus_per_cell=settings.cpus_per_cell, gpus_per_cell=int(settings.gpus_per_cell),
                             array_parallelism=settings.slurm_array_parallelism, cluster=settings.slurm_cluster)
    return LocalLauncher(settings.jobs, registries)


def threads_per_cell(settings: LaunchSettings) -> int:
    """Torch threads for each cell: the local launcher divides this machine's cores between its jobs;
    Ray and SLURM give each cell the CPUs it reserved."""
    return threads_per_job(settings.jobs) if settings.launcher == "local" else settings.cpus_per_cell
