"""Facts about other processes on this host, shared by the writers that must tell a dead peer from a
live one (stale temp files, sweep cell claims, core shares)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive, only not ours to signal
        return True
    return True
