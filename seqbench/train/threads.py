"""The thread policy: how many torch threads a seqbench process uses.

Recurrences launch many small ops, each ending in a thread barrier; when more threads are busy than the
machine has cores, those barriers stall (measured on a 2-core machine: a GRU at 2.5e3 tokens/s with two
threads beside other jobs, 3.2e5 with one). So a process uses the cores it may run on, not torch's
default, and ``J`` concurrent jobs divide those cores between them.

Independent seqbench processes (two users' runs, two terminals) divide the cores too: while it trains
under the policy, a process holds a :class:`CoreShare` (a file naming its pid in a per-user folder)
and every few steps takes ``cores // live holders`` threads (measured on the 2-core machine: two copies
of the main job at 2 threads each trained at 0.31 of one alone, at 1 thread each at 0.84 of it). An
explicit ``--threads`` or ``OMP_NUM_THREADS`` is taken as given and shares nothing.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import torch

from seqbench.errors import UserError
from seqbench.process import pid_alive


def available_cores() -> int:
    """The threads this process may use: ``OMP_NUM_THREADS`` when set, else the cores it may run on."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``jobs`` processes run at once, dividing ``cores`` (default: available)."""
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    return max(1, (available_cores() if cores is None else cores) // jobs)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}; leave it out to use the available cores")


def apply_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: :func:`available_cores`) and return the number used."""
    check_threads(threads)
    n = available_cores() if threads is None else threads
    torch.set_num_threads(n)
    return n


def policy_decides(threads: int | None) -> bool:
    """Whether the thread count is the policy's to set: neither ``--threads`` nor ``OMP_NUM_THREADS`` given."""
    return threads is None and not os.environ.get("OMP_NUM_THREADS", "").strip()


def _shares_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"seqbench-{uid}" / "core-shares"


class CoreShare:
    """This process's share of the machine's cores while it trains: ``fair_threads()`` is ``cores``
    divided among the live holders of a share (this one included); a holder that died is forgotten."""

    def __init__(self, cores: int, folder: Path | None = None):
        self.cores = cores
        self.folder = folder or _shares_dir()
        self.path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> CoreShare:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)

    def holders(self) -> int:
        live = 0
        for path in self.folder.glob("*-*"):
            pid = path.name.partition("-")[0]
            if pid.isdigit() and pid_alive(int(pid)):
                live += 1
            else:
                path.unlink(missing_ok=True)
        return max(1, live)

    def fair_threads(self) -> int:
        return max(1, self.cores // self.holders())
