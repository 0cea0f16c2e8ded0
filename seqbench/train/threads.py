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

Other programs count too (a browser, a compile, another user's job): OpenMP runs one thread per core,
and when another process holds a core every parallel region waits for the preempted thread (the main
job beside one ``yes > /dev/null`` took > 9x its quiet time at 2 threads). So a share also watches the
machine (:class:`MachineLoad`): from /proc/stat's per-CPU busy time over the last window, less the CPU
time of seqbench's own sharing processes (/proc/<pid>/stat), it counts the cores other programs keep
busy, and divides only the rest. The window is the time since the last check (every few training
batches), so watching costs no sleep except once, briefly, at the start.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterable
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


PROC = Path("/proc")
# A core counts as taken when other programs kept it busy at least this fraction of the window, summed
# over the allowed CPUs (half a core: a short burst does not cost a thread, a steady job does).
BUSY_CORE = 0.5


def _cpu_ticks(proc: Path, cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over the CPUs in ``cpus`` (all when None), from /proc/stat."""
    try:
        lines = (proc / "stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = found = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()) or (cpus is not None and int(name[3:]) not in cpus):
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        ticks = [int(v) for v in fields[:8]] + [0] * (8 - len(fields[:8]))
        idle = ticks[3] + ticks[4]
        busy += sum(ticks[:8]) - idle
        total += sum(ticks[:8])
        found += 1
    return (busy, total) if found else None


def _process_ticks(proc: Path, pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks; 0 when it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted from the state


class MachineLoad:
    """How many of ``cpus`` other programs keep busy: the busy time in /proc/stat since the last look,
    less the CPU time of the given (seqbench) processes, in cores. ``proc`` is a folder laid out like
    /proc (tests hand in a fake one)."""

    def __init__(self, cpus: Iterable[int] | None = None, proc: Path = PROC, min_window_s: float = 0.2):
        self.cpus = None if cpus is None else set(cpus)
        self.proc = proc
        self.min_window_s = min_window_s
        self._last: tuple[float, tuple[int, int] | None, dict[int, int]] | None = None

    def _look(self, pids: Iterable[int]) -> tuple[float, tuple[int, int] | None, dict[int, int]]:
        return time.monotonic(), _cpu_ticks(self.proc, self.cpus), {pid: _process_ticks(self.proc, pid) for pid in pids}

    def start(self, pids: Iterable[int]) -> None:
        self._last = self._look(pids)

    def foreign_cores(self, pids: Iterable[int]) -> float | None:
        """Cores busy with other programs since the last call (or :meth:`start`); None without /proc/stat.

        The first window is stretched to ``min_window_s`` (one short sleep), later ones are the time
        between calls."""
        pids = list(pids)
        if self._last is None:
            self.start(pids)
        then, before, before_pids = self._last
        wait = self.min_window_s - (time.monotonic() - then)
        if wait > 0:
            time.sleep(wait)
        self._last = now = self._look(pids)
        after, after_pids = now[1], now[2]
        if before is None or after is None or after[1] <= before[1]:
            return None
        cpus = len(self.cpus) if self.cpus is not None else None
        ticks_per_cpu = (after[1] - before[1]) / (cpus or _cpu_count(self.proc) or 1)
        ours = sum(after_pids.get(pid, 0) - before_pids[pid] for pid in before_pids if pid in after_pids)
        return max(0.0, (after[0] - before[0] - ours) / ticks_per_cpu)


def _cpu_count(proc: Path) -> int:
    try:
        return sum(1 for line in (proc / "stat").read_text().splitlines()
                   if line.startswith("cpu") and line[3:4].isdigit())
    except OSError:
        return 0


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


_WATCH = object()  # CoreShare's default: watch this machine's /proc


class CoreShare:
    """This process's share of the machine's cores while it trains: ``fair_threads()`` is the ``cores``
    other programs leave free (per ``load``, a :class:`MachineLoad`; None ignores them) divided among the
    live holders of a share (this one included); a holder that died is forgotten."""

    def __init__(self, cores: int, folder: Path | None = None, load: MachineLoad | None | object = _WATCH):
        self.cores = cores
        self.folder = folder or _shares_dir()
        self.path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if load is _WATCH:
            load = MachineLoad(_allowed_cpus()) if (PROC / "stat").exists() else None
        self.load = load
        self.foreign_cores: float | None = None  # at the last check, for the record

    def __enter__(self) -> CoreShare:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        if self.load is not None:
            self.load.start(self.holder_pids())
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)

    def holder_pids(self) -> list[int]:
        """The pids of live holders (a dead one's file is removed)."""
        live = []
        for path in self.folder.glob("*-*"):
            pid = path.name.partition("-")[0]
            if pid.isdigit() and pid_alive(int(pid)):
                live.append(int(pid))
            else:
                path.unlink(missing_ok=True)
        return live

    def holders(self) -> int:
        return max(1, len(self.holder_pids()))

    def free_cores(self, pids: list[int]) -> int:
        """``cores`` less those other programs kept busy over the last window (at least 1)."""
        if self.load is None:
            return self.cores
        self.foreign_cores = self.load.foreign_cores(set(pids) | {os.getpid()})
        if self.foreign_cores is None:
            return self.cores
        return max(1, self.cores - int(self.foreign_cores + 1.0 - BUSY_CORE))

    def fair_threads(self) -> int:
        pids = self.holder_pids()
        return max(1, self.free_cores(pids) // max(1, len(pids)))
