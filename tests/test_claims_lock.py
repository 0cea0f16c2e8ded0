"""Cell claims: one holder at a time, stale claims (dead owner, no heartbeat) taken over, release."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from seqbench.sweeps.claims_lock import BREAK_GRACE_S, Claim, Owner, claim_path, read_owner, try_claim


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(results, key, host, pid, age_s=0.0):
    path = claim_path(results, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started_at": "2026-01-01T00:00:00+00:00",
                                "token": "planted"}))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def test_one_holder_at_a_time_and_release(tmp_path):
    first = try_claim(tmp_path, "abc")
    assert isinstance(first, Claim)
    data = json.loads(claim_path(tmp_path, "abc").read_text())
    assert data["host"] == socket.gethostname() and data["pid"] == os.getpid() and data["started_at"]
    second = try_claim(tmp_path, "abc")
    assert isinstance(second, Owner) and second.token == first.owner.token  # live owner: not taken
    first.release()
    assert not claim_path(tmp_path, "abc").exists()
    third = try_claim(tmp_path, "abc")
    assert isinstance(third, Claim) and third.owner.token != first.owner.token
    third.release()


def test_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    _plant(tmp_path, "k", socket.gethostname(), _dead_pid())
    claim = try_claim(tmp_path, "k")
    assert isinstance(claim, Claim) and read_owner(claim.path).token == claim.owner.token
    claim.release()


def test_claim_from_another_host_is_kept_until_its_heartbeat_times_out(tmp_path):
    _plant(tmp_path, "k", "some-other-host", 1, age_s=50)
    held = try_claim(tmp_path, "k", timeout_s=100)
    assert isinstance(held, Owner) and held.host == "some-other-host"
    claim = try_claim(tmp_path, "k", timeout_s=30)  # 50 s without a heartbeat > 30 s
    assert isinstance(claim, Claim)
    claim.release()


def test_heartbeat_keeps_a_long_claim_fresh(tmp_path):
    claim = try_claim(tmp_path, "k", heartbeat_s=0.05)
    old = time.time() - 1000
    os.utime(claim.path, (old, old))
    deadline = time.monotonic() + 10
    while time.time() - claim.path.stat().st_mtime > 100:
        assert time.monotonic() < deadline, "the heartbeat never refreshed the claim"
        time.sleep(0.02)
    assert isinstance(try_claim(tmp_path, "k", timeout_s=100), Owner)
    claim.release()


def test_release_leaves_a_claim_that_was_taken_over(tmp_path):
    claim = try_claim(tmp_path, "k")
    _plant(tmp_path, "k", "other-host", 1)  # another worker took it over meanwhile
    claim.release()
    assert read_owner(claim_path(tmp_path, "k")).token == "planted"


def test_a_breaker_killed_mid_break_does_not_block_forever(tmp_path):
    _plant(tmp_path, "k", socket.gethostname(), _dead_pid())
    lock = claim_path(tmp_path, "k").with_name("k.json.break")
    lock.write_text("")
    assert not isinstance(try_claim(tmp_path, "k"), Claim)  # a fresh .break: somebody is breaking it
    old = time.time() - BREAK_GRACE_S - 5
    os.utime(lock, (old, old))
    claim = try_claim(tmp_path, "k")
    assert isinstance(claim, Claim) and not lock.exists()
    claim.release()


def test_an_empty_claim_file_is_stale_only_after_the_grace_period(tmp_path):
    path = claim_path(tmp_path, "k")
    path.parent.mkdir(parents=True)
    path.write_text("")  # its writer was killed between open and write
    assert try_claim(tmp_path, "k") is None
    old = time.time() - BREAK_GRACE_S - 5
    os.utime(path, (old, old))
    claim = try_claim(tmp_path, "k")
    assert isinstance(claim, Claim)
    claim.release()
