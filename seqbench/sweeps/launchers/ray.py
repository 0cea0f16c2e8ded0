"""The Ray launcher: each cell a Ray task reserving ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs.

With an ``address`` the tasks go to that cluster; without one, to the Ray instance this process already
started, else to a local instance started here and shut down at the end. Ray retries nothing: a task
that dies leaves no row, its claim goes stale, and the next launch runs the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from seqbench.sweeps.sweep import CellJob, CellOutcome, execute

if TYPE_CHECKING:  # the launchers' package imports these modules: OnDone is for annotations only
    from seqbench.sweeps.launchers import OnDone


def _execute_in_task(job: CellJob) -> CellOutcome:
    return execute(job)


class RayLauncher:
    name = "ray"

    def __init__(self, address: str | None, cpus_per_cell: int, gpus_per_cell: float):
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell

    def run(self, jobs: Sequence[CellJob], on_done: OnDone) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=0)(
                _execute_in_task)
            in_flight = {task.remote(job): job for job in jobs}
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    job = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        outcome = CellOutcome(job.key, "lost", detail=f"{type(exc).__name__}: {exc}"[:500])
                    on_done(job, outcome)
        finally:
            if started_here:
                ray.shutdown()
