"""The thread policy's view of the machine: busy cores from a fake /proc, and the share they leave."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqbench.train import threads
from seqbench.train.threads import CoreShare, MachineLoad

HZ = 100  # clock ticks per second in the fake /proc: one window below is one second


class FakeProc:
    """A folder laid out like /proc: ``stat`` with per-CPU tick counters and ``<pid>/stat`` per process."""

    def __init__(self, root: Path, cpus: int):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.busy = [0] * cpus
        self.idle = [0] * cpus
        self.process = {}
        self.write()

    def advance(self, busy_per_cpu: list[float], process_cores: dict[int, float] | None = None) -> None:
        """One second passes: CPU i is busy busy_per_cpu[i] of it; each pid used process_cores[pid] cores."""
        for i, fraction in enumerate(busy_per_cpu):
            self.busy[i] += round(fraction * HZ)
            self.idle[i] += HZ - round(fraction * HZ)
        for pid, cores in (process_cores or {}).items():
            self.process[pid] = self.process.get(pid, 0) + round(cores * HZ)
        self.write()

    def write(self) -> None:
        lines = [f"cpu  {sum(self.busy)} 0 0 {sum(self.idle)} 0 0 0 0 0 0"]
        # busy split over user and system, idle over idle and iowait, as the kernel reports them
        lines += [f"cpu{i} {b - b // 3} 0 {b // 3} {d - d // 4} {d // 4} 0 0 0 0 0"
                  for i, (b, d) in enumerate(zip(self.busy, self.idle))]
        lines += ["intr 12345 0 0", "ctxt 999", "procs_running 3"]
        (self.root / "stat").write_text("\n".join(lines) + "\n")
        for pid, ticks in self.process.items():
            folder = self.root / str(pid)
            folder.mkdir(exist_ok=True)
            user, system = ticks - ticks // 5, ticks // 5
            # the command name may hold spaces and parentheses: fields are counted after the last ")"
            (folder / "stat").write_text(f"{pid} (python (x) y) R 1 {pid} {pid} 0 -1 4194304 10 0 0 0 "
                                         f"{user} {system} 0 0 20 0 3 0 100 1000 200\n")


@pytest.fixture
def fake(tmp_path):
    return FakeProc(tmp_path / "proc", cpus=2)


def test_a_busy_program_elsewhere_counts_and_our_own_time_does_not(fake):
    load = MachineLoad(proc=fake.root, min_window_s=0)
    load.start([4242])
    fake.advance([1.0, 1.0], {4242: 1.0})  # both CPUs busy, one core of it ours
    assert load.foreign_cores([4242]) == pytest.approx(1.0)
    fake.advance([1.0, 0.2], {4242: 1.0})
    assert load.foreign_cores([4242]) == pytest.approx(0.2)
    fake.advance([0.0, 0.0])
    assert load.foreign_cores([4242]) == pytest.approx(0.0)


def test_only_the_cpus_this_process_may_use_are_read(fake):
    load = MachineLoad(cpus=[1], proc=fake.root, min_window_s=0)
    load.start([])
    fake.advance([1.0, 0.0])  # the busy CPU is not ours to run on
    assert load.foreign_cores([]) == pytest.approx(0.0)


def test_without_proc_stat_nothing_is_known(tmp_path):
    load = MachineLoad(proc=tmp_path / "absent", min_window_s=0)
    load.start([])
    assert load.foreign_cores([]) is None


def share_with(fake: FakeProc, tmp_path: Path, cores: int) -> CoreShare:
    return CoreShare(cores, tmp_path / "shares", load=MachineLoad(proc=fake.root, min_window_s=0))


def test_the_share_drops_to_the_cores_left_free_and_recovers(fake, tmp_path):
    me = os.getpid()
    with share_with(fake, tmp_path, cores=2) as share:
        fake.advance([0.1, 0.05], {me: 0.0})  # a quiet machine
        assert share.fair_threads() == 2
        fake.advance([1.0, 1.0], {me: 1.0})  # `yes > /dev/null` beside us: one core taken
        assert share.fair_threads() == 1 and share.foreign_cores == pytest.approx(1.0)
        fake.advance([1.0, 0.3], {me: 1.0})  # it ended; a short burst is not a taken core
        assert share.fair_threads() == 2
        fake.advance([1.0, 1.0], {me: 0.0})  # two cores busy elsewhere: one thread still runs
        assert share.fair_threads() == 1


def test_busy_cores_and_other_seqbench_holders_both_divide(tmp_path):
    fake = FakeProc(tmp_path / "proc", cpus=4)
    me = os.getpid()
    with share_with(fake, tmp_path, cores=4) as share:
        with CoreShare(4, tmp_path / "shares", load=None):  # a second seqbench run (same pid here)
            fake.advance([1.0, 1.0, 1.0, 0.0], {me: 2.0})  # ours use two cores, something else one
            assert share.fair_threads() == 1  # (4 - 1) free cores // 2 holders


def test_a_share_without_a_load_ignores_the_machine(fake, tmp_path):
    with CoreShare(2, tmp_path / "shares", load=None) as share:
        fake.advance([1.0, 1.0])
        assert share.fair_threads() == 2 and share.foreign_cores is None


def test_the_default_share_watches_this_machine_when_proc_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "PROC", tmp_path / "no-proc")
    assert CoreShare(2, tmp_path / "a").load is None
    monkeypatch.setattr(threads, "PROC", Path("/proc"))
    if Path("/proc/stat").exists():
        assert isinstance(CoreShare(2, tmp_path / "b").load, MachineLoad)
