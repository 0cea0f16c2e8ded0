"""The thread policy: how many torch threads a seqbench process uses.

Recurrences launch many small ops, each ending in a thread barrier; when more threads are busy than the
machine has cores, those barriers stall (measured on a 2-core machine: a GRU at 2.5e3 tokens/s with two
threads beside other jobs, 3.2e5 with one). So a process uses the cores it may run on, not torch's
default, and ``J`` concurrent jobs divide those cores between them.
"""

from __future__ import annotations

import os

from seqbench.errors import UserError


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
    import torch

    check_threads(threads)
    n = available_cores() if threads is None else threads
    torch.set_num_threads(n)
    return n
