"""Processes: facts about other processes on this host, shared by the writers that must tell a dead peer
from a live one (stale temp files, sweep cell claims, core shares); this process's SIGTERM/SIGINT handler
(:class:`SignalWatch`, how training uses it: :mod:`seqbench.train.interrupt`); and a worker's tie to
its parent (:func:`exit_with_parent`). Standard library only: the CLI installs the handler before it
imports torch."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from seqbench.errors import RunInterrupted


def pid_running(pid: int) -> bool:
    """Like :func:`pid_alive`, but a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): the signal test
        return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive, only not ours to signal
        return True
    return True


SIGNALS = (signal.SIGTERM, signal.SIGINT)
RAISE, DEFER, EXIT = "raise", "defer", "exit"


class SignalWatch:
    """The process's SIGTERM/SIGINT handler. It records the first signal and then, by its mode:

    - ``raise``: raises RunInterrupted where the program is (loading data, testing, between sweep
      cells; every writer is atomic and every claim a context manager, so nothing is left half-written);
    - ``defer``: nothing more, while Lightning trains (Lightning composes its own SIGTERM handler with
      this one); :class:`seqbench.train.interrupt.StopOnSignal` ends training at the next batch boundary;
    - ``exit``: ``os._exit(128 + signum)`` at once, for an idle sweep worker (nothing of its own to save).

    A second signal while a deferred one waits raises at once: whoever sends it insists."""

    def __init__(self, mode: str = RAISE):
        self.mode = mode
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> SignalWatch:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.mode == EXIT:
            os._exit(128 + signum)
        if self.mode == RAISE and first or self.mode == DEFER and not first:
            raise RunInterrupted(self.signum)

    @contextlib.contextmanager
    def in_mode(self, mode: str) -> Iterator[None]:
        previous, self.mode = self.mode, mode
        try:
            yield
        finally:
            self.mode = previous


_active: SignalWatch | None = None


def active() -> SignalWatch | None:
    """The watch installed in this process, if any (the CLI and sweep workers install one)."""
    return _active


@contextlib.contextmanager
def watching(mode: str = RAISE) -> Iterator[SignalWatch | None]:
    """Install a :class:`SignalWatch` for the duration (only the main thread may set signal handlers:
    elsewhere, e.g. a Ray actor's thread, this does nothing)."""
    global _active
    if threading.current_thread() is not threading.main_thread() or _active is not None:
        yield _active
        return
    _active = SignalWatch(mode).install()
    try:
        yield _active
    finally:
        _active.uninstall()
        _active = None


def install_for_process(mode: str) -> SignalWatch:
    """Install a watch for the rest of this process's life (a sweep worker's)."""
    global _active
    if _active is None:
        _active = SignalWatch(mode).install()
    _active.mode = mode
    return _active


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Send this process SIGTERM when its parent dies, whatever ended the parent (``kill -9`` included),
    so a pool worker never outlives the sweep that started it (an orphaned worker would finish its
    cell and then wait forever for the next one).

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``, for the process that forked this one:
    a forkserver, which itself exits when the sweep does); everywhere, a thread also checks every
    ``poll_s`` that ``parent_pid`` still runs and that this process was not re-parented (the race of a
    parent that died before the prctl)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    direct = os.getppid()

    def watch() -> None:
        while os.getppid() == direct and pid_running(parent_pid):
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="seqbench-parent-watch").start()
