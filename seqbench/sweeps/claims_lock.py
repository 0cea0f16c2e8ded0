"""Cell claims: workers sharing a results folder never run the same cell twice.

Before a worker runs a cell it creates ``<results>/claims/<config_hash>.json`` with
``os.open(O_CREAT | O_EXCL)``, which exactly one process can do, also on a network file system that
honours O_EXCL (NFSv3 and later). The file names the owner (host, pid, start time, a random token).
The owner refreshes the file's mtime every ``HEARTBEAT_S`` while the cell runs, and removes the file
once the cell's row is written (or the cell failed and its ``failed`` row is written).

A claim is *stale*, and may be taken over, when its owner is gone: same host and the pid is not
alive, or no heartbeat for ``timeout_s`` (the only test that works across hosts; a suspended job
whose claim goes stale may lose its cell to another worker, which is why the default is generous).

Taking over is serialised by a second O_EXCL file, ``<config_hash>.json.break``: only the worker that
creates it may break the stale claim. Under it the worker reads the claim again, checks it is still
the same stale one (same token), removes it and then competes for a fresh claim with O_EXCL like
everybody else. A breaker killed in the middle leaves its ``.break`` file; one older than
``BREAK_GRACE_S`` (breaking takes milliseconds) is itself stale and removed. The one remaining race:
two workers that both find the same old ``.break`` and both read the stale claim before either
breaks it; that needs a breaker killed within its few milliseconds of work, and two more workers
breaking the same claim at that moment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.process import pid_alive

CLAIMS_DIR = "claims"
DEFAULT_TIMEOUT_S = 6 * 3600.0  # six hours without a heartbeat: the owner is taken to be gone
HEARTBEAT_S = 60.0
BREAK_GRACE_S = 60.0


def claim_path(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / CLAIMS_DIR / f"{key}.json"


@dataclass(frozen=True)
class Owner:
    """Who holds a claim, as written in the claim file."""

    host: str
    pid: int
    started_at: str  # ISO UTC, for people reading the file
    token: str  # unique per claim: tells a claim from a later one by the same process

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), dt.datetime.now(dt.timezone.utc).isoformat(),
                   uuid.uuid4().hex)

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} since {self.started_at}"


def read_owner(path: Path) -> Owner | None:
    """The claim's owner, or None when the file is gone or not (yet) a complete claim."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return Owner(str(data["host"]), int(data["pid"]), str(data["started_at"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def is_stale(path: Path, owner: Owner | None, timeout_s: float) -> bool:
    """True when the claim at ``path`` (read as ``owner``) may be taken over."""
    age = _age_s(path)
    if age is None:
        return False  # gone already: the caller simply tries to create it again
    if owner is None:  # being written right now, or left empty by a writer killed between open and write
        return age > BREAK_GRACE_S
    if owner.host == socket.gethostname() and not pid_alive(owner.pid):
        return True
    return age > timeout_s


def _create(path: Path, owner: Owner) -> bool:
    """Create the claim file with O_EXCL; False when it exists."""
    for _ in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            return False
        except FileNotFoundError:  # the folder was removed by a releasing worker that saw it empty: again
            continue
    else:
        raise OSError(f"cannot create the claim {path}: its folder keeps disappearing")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"host": owner.host, "pid": owner.pid, "started_at": owner.started_at, "token": owner.token}, f)
    except BaseException:  # a full disk, a signal: an empty claim would block the cell for BREAK_GRACE_S
        path.unlink(missing_ok=True)
        raise
    return True


def _break_stale(path: Path, seen: Owner | None, timeout_s: float) -> None:
    """Remove the claim at ``path`` if it is still the stale one we read (see the module docstring)."""
    lock = path.with_name(path.name + ".break")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        age = _age_s(lock)
        if age is not None and age > BREAK_GRACE_S:  # its breaker was killed mid-break
            lock.unlink(missing_ok=True)
        return  # somebody else is breaking it; the caller looks again
    os.close(fd)
    try:
        now = read_owner(path)
        same = (now is None and seen is None) or (now is not None and seen is not None and now.token == seen.token)
        if same and is_stale(path, now, timeout_s):
            path.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


class Claim:
    """A held claim: refreshes its heartbeat until :meth:`release`. Use as a context manager."""

    def __init__(self, path: Path, owner: Owner, heartbeat_s: float = HEARTBEAT_S):
        self.path = path
        self.owner = owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                        name=f"claim-heartbeat-{path.stem}")
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self.still_mine():
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def still_mine(self) -> bool:
        owner = read_owner(self.path)
        return owner is not None and owner.token == self.owner.token

    def release(self) -> None:
        """Stop the heartbeat and remove the file, unless another worker took the claim over meanwhile."""
        self._stop.set()
        if self.still_mine():
            self.path.unlink(missing_ok=True)
        try:  # the last claim out removes the folder, so a finished sweep leaves none behind
            self.path.parent.rmdir()
        except OSError:  # not empty: other cells are claimed
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_claim(results_dir: Path, key: str, timeout_s: float = DEFAULT_TIMEOUT_S,
              heartbeat_s: float = HEARTBEAT_S) -> Claim | Owner | None:
    """Claim cell ``key``: a :class:`Claim` when this process now holds it, else the live owner that
    holds it (None when the holder's file is still being written)."""
    path = claim_path(results_dir, key)
    for _ in range(3):  # create; else break a stale claim and create again
        owner = Owner.me()
        if _create(path, owner):
            return Claim(path, owner, heartbeat_s)
        holder = read_owner(path)
        if not is_stale(path, holder, timeout_s):
            if _age_s(path) is None:
                continue  # released between our create and read: try again
            return holder
        _break_stale(path, holder, timeout_s)
    return read_owner(path)
