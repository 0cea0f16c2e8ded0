"""The local launcher: cells on this machine, ``jobs`` at once.

With one job, cells run one after another in this process (with the caller's registries, so plugins
registered in-process work too). With more, each cell runs in a fresh spawned process, so a cell's
memory, torch's global state and a crash stay with it; a worker that dies (killed, out of memory)
leaves no row and its claim goes stale, so the next launch runs the cell again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

from seqbench.launchers import OnDone
from seqbench.sweep import CellJob, CellOutcome, execute


def _child(job: CellJob, conn: Connection) -> None:
    # before torch is first imported in this fresh process, so OpenMP's pool gets the same size
    os.environ["OMP_NUM_THREADS"] = str(job.threads)
    try:
        outcome = execute(job)
    except Exception as exc:  # e.g. the recorded config no longer fits: nothing ran
        outcome = CellOutcome(job.key, "lost", detail=f"{type(exc).__name__}: {exc}")
    conn.send(outcome)
    conn.close()


class LocalLauncher:
    name = "local"

    def __init__(self, jobs: int, registries=None):
        self.jobs = jobs
        self._registries = registries

    def run(self, jobs: Sequence[CellJob], on_done: OnDone) -> None:
        if self.jobs == 1:
            for job in jobs:
                on_done(job, execute(job, self._registries))
            return
        self._run_processes(list(jobs), on_done)

    def _run_processes(self, waiting: list[CellJob], on_done: OnDone) -> None:
        ctx = mp.get_context("spawn")  # a clean interpreter: no fork of a process holding torch threads
        running: dict[Connection, tuple[mp.process.BaseProcess, CellJob]] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.jobs:
                    job = waiting.pop(0)
                    receive, send = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=_child, args=(job, send), name=f"seqbench-cell-{job.key}")
                    process.start()
                    send.close()  # the child holds the only write end: its exit reads as EOF here
                    running[receive] = (process, job)
                for receive in wait(list(running)):
                    process, job = running.pop(receive)
                    try:
                        outcome = receive.recv()
                    except EOFError:
                        process.join()
                        outcome = CellOutcome(job.key, "lost", detail=f"worker exited with code {process.exitcode}")
                    process.join()
                    receive.close()
                    on_done(job, outcome)
        finally:  # Ctrl-C or an error here: stop the cells still running (their claims are released or go stale)
            for process, _ in running.values():
                process.terminate()
            for process, _ in running.values():
                process.join()
