"""The SLURM launcher: each cell a job of one submitit job array.

submitit writes each job's pickle and logs under ``folder`` and submits the array with the partition,
time limit, CPUs, GPUs and array parallelism given; this process then waits, reporting each job as it
ends. Stopping it (Ctrl-C) does not cancel the submitted jobs: they go on, claim their cells and write
their rows, and a later launch skips whatever is done or running. ``cluster="local"`` runs the same
jobs as processes on this machine (submitit's LocalExecutor), which is how the tests run it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seqbench.errors import UserError
from seqbench.sweeps.sweep import CellJob, CellOutcome, execute

if TYPE_CHECKING:  # the launchers' package imports these modules: OnDone is for annotations only
    from seqbench.sweeps.launchers import OnDone


def parse_minutes(text: str) -> int:
    """``"90"`` (minutes), ``"1:30:00"``, ``"2-00:00:00"`` (SLURM's [D-]H:MM:SS) -> minutes."""
    match = re.fullmatch(r"\s*(?:(\d+)-)?(\d+):(\d{2}):(\d{2})\s*", str(text))
    if match:
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    elif str(text).strip().isdigit():
        total = int(str(text).strip())
    else:
        total = 0
    if total < 1:
        raise UserError(f"bad --slurm-time {text!r}: give minutes (e.g. 90) or [D-]H:MM:SS (e.g. 1:30:00)")
    return total


class SlurmLauncher:
    name = "slurm"

    def __init__(self, folder: Path, *, partition: str | None, minutes: int, cpus_per_cell: int,
                 gpus_per_cell: int, array_parallelism: int, cluster: str | None):
        self.folder = folder
        self.partition = partition
        self.minutes = minutes
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.array_parallelism = array_parallelism
        self.cluster = cluster

    def _executor(self):
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        # slurm_* keys reach SLURM only; submitit drops them for its local executor
        parameters = {"name": "seqbench", "timeout_min": self.minutes, "cpus_per_task": self.cpus_per_cell,
                      "gpus_per_node": self.gpus_per_cell, "slurm_array_parallelism": self.array_parallelism}
        if self.partition:
            parameters["slurm_partition"] = self.partition
        executor.update_parameters(**parameters)
        return executor

    def run(self, jobs: Sequence[CellJob], on_done: OnDone) -> None:
        from submitit.helpers import as_completed

        if not jobs:
            return
        submitted = self._executor().map_array(execute, list(jobs))
        by_id = {s.job_id: job for s, job in zip(submitted, jobs)}
        poll = 1.0 if self.cluster in ("local", "debug") else 15.0  # squeue is shared: poll it gently
        for done in as_completed(submitted, poll_frequency=poll):
            job = by_id[done.job_id]
            try:
                outcome = done.result()
            except Exception as exc:  # the job failed outside the cell (time limit, node failure, a crash)
                outcome = CellOutcome(job.key, "lost", detail=f"SLURM job {done.job_id}: {exc}".splitlines()[0][:500])
            on_done(job, outcome)
