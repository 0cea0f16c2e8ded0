"""The local launcher: cells on this machine, ``jobs`` at once.

With one job, cells run one after another in this process (with the caller's registries, so plugins
registered in-process work too). With more, a pool of ``jobs`` worker processes runs them, each
taking cell after cell; the cores are divided between the
workers (:func:`seqbench.train.threads.threads_per_job`). A worker that dies (killed, out of memory) leaves
no row for its cell and its claim goes stale, so the next launch runs that cell again; the pool is
rebuilt and the sweep goes on with the other cells.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from seqbench.errors import RunInterrupted
from seqbench.process import EXIT, RAISE, exit_with_parent, install_for_process
from seqbench.sweeps.sweep import CellJob, CellOutcome, execute

if TYPE_CHECKING:  # the launchers' package imports these modules: OnDone is for annotations only
    from seqbench.sweeps.launchers import OnDone


def _start_worker(threads: int, sweep_pid: int) -> None:
    # before OpenMP starts its threads (at the first parallel op, after the fork), so its pool has this size
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # SIGTERM/SIGINT: an idle worker exits at once; one running a cell checkpoints it (with checkpoints
    # on) and releases its claim first (_work). The sweep's death, however it dies, sends SIGTERM.
    install_for_process(EXIT)
    exit_with_parent(sweep_pid)


def _work(job: CellJob) -> CellOutcome:
    """:func:`execute` in a pool worker. A signal ends the worker once its cell is let go: the pool's
    worker loop would otherwise go back to waiting for work from a sweep that is gone."""
    with install_for_process(EXIT).in_mode(RAISE):
        try:
            return execute(job)
        except RunInterrupted as exc:
            os._exit(exc.exit_code)


# Imported once by the fork server; each worker forks from it instead of importing them again (seconds each).
_PRELOAD = ["torch", "lightning", "seqbench.train.runner", "seqbench.train.lit"]


def _context():
    """Workers never fork this process (it may hold torch's threads): they fork a clean fork server that
    has imported torch but run nothing, or are spawned where there is no fork server. The fork server
    starts with the first pool and keeps the environment of that moment for every later worker."""
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return mp.get_context("spawn")


def _pool(jobs: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_start_worker,
                               initargs=(threads, os.getpid()))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM each worker: it checkpoints its cell (with checkpoints on) and releases the claim.
    (``_processes`` is the executor's table of its worker processes; it has no public one.)"""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


class LocalLauncher:
    name = "local"

    def __init__(self, jobs: int, registries=None):
        self.jobs = jobs
        self._registries = registries

    def run(self, jobs: Sequence[CellJob], on_done: OnDone) -> None:
        if self.jobs == 1:
            for job in jobs:
                on_done(job, execute(job, self._registries))
        elif jobs:
            self._run_pool(list(jobs), on_done)

    def _run_pool(self, waiting: list[CellJob], on_done: OnDone) -> None:
        pool = _pool(self.jobs, waiting[0].threads)
        running: dict[Future, CellJob] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.jobs:  # at most one queued cell per worker: a broken
                    job = waiting.pop(0)                      # pool loses only the cells it was running
                    running[pool.submit(_work, job)] = job
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    job = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        outcome = CellOutcome(job.key, "lost", detail="its worker process died (killed or out of "
                                                                      "memory); no row was written")
                    except OSError as exc:
                        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                            raise
                        _stop_workers(pool)  # a full disk fails every cell: stop, as run_cell does
                        raise
                    except Exception as exc:  # e.g. the recorded config no longer fits: nothing ran
                        outcome = CellOutcome(job.key, "lost", detail=f"{type(exc).__name__}: {exc}")
                    on_done(job, outcome)
                if broken:
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = _pool(self.jobs, waiting[0].threads if waiting else 1)
        except RunInterrupted:  # SIGTERM or SIGINT of the sweep: no new cell; the running ones let go
            _stop_workers(pool)
            raise
        finally:  # Ctrl-C or an error here: cells still queued are dropped (their claims were never taken)
            pool.shutdown(wait=True, cancel_futures=True)
