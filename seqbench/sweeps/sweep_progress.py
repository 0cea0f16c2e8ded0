"""A sweep's progress: cells done of total, and an ETA from the cells finished so far.

The ETA is the sweep's own rate: wall time since the launch divided by the cells that ran, times the
cells left. It is measured across however many cells run at once (jobs, Ray tasks, array tasks), so it
needs no knowledge of the launcher. Cells that another worker holds or had finished count as done
but not in the rate. On a terminal this is a rich progress bar; in a log, one plain line per cell.
"""

from __future__ import annotations

import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from seqbench.results import Status
from seqbench.sweeps.sweep import CellJob, CellOutcome
from seqbench.train.progress import format_seconds


class SweepClock:
    """Counts cells and estimates the time left from the cells that ran."""

    def __init__(self, total: int):
        self.total = total
        self.finished = 0
        self.ran = 0
        self.start = time.monotonic()

    def add(self, ran: bool) -> None:
        self.finished += 1
        self.ran += ran

    def eta_s(self) -> float | None:
        if not self.ran:
            return None
        return (time.monotonic() - self.start) / self.ran * (self.total - self.finished)


class EtaColumn(ProgressColumn):
    """``eta H:MM:SS`` from the sweep's :class:`SweepClock` (rich's own estimate needs a steady stream
    of updates; a sweep's cells take minutes)."""

    def __init__(self, clock: SweepClock):
        super().__init__()
        self.clock = clock

    def render(self, task) -> Text:
        return Text(f"eta {format_seconds(self.clock.eta_s())}", style="progress.remaining")


def describe_outcome(job: CellJob, outcome: CellOutcome) -> tuple[str, str]:
    """(state shown, colour) and a one-line detail for a finished job."""
    if outcome.state != "ran":
        detail = {"done": "its row was written by another worker", "claimed": f"claimed by {outcome.detail}",
                  "lost": outcome.detail}[outcome.state]
        return (f"[{'red' if outcome.state == 'lost' else 'yellow'}]{outcome.state}[/]",
                f"{escape(job.label)} {escape(detail)}")
    row = outcome.row or {}
    status = row.get("status", "?")
    score = row.get("accuracy")
    detail = f" accuracy={score:.3f}" if isinstance(score, float) else ""
    if status not in (Status.OK, Status.DIVERGED):
        detail = f" {str(row.get('error') or '').splitlines()[0] if row.get('error') else ''}"
    return f"[{'green' if status == Status.OK else 'red'}]{status}[/]", f"{escape(job.label)}{escape(detail)}"


class SweepProgress:
    """``with SweepProgress(console, total) as progress: launcher.run(jobs, progress.done)``."""

    def __init__(self, console, total: int):
        self.console = console
        self.clock = SweepClock(total)
        self._bar: Progress | None = None
        if console.is_terminal:
            self._bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 EtaColumn(self.clock), console=console)
            self._task = self._bar.add_task("sweep", total=total)

    def __enter__(self) -> SweepProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def done(self, job: CellJob, outcome: CellOutcome) -> None:
        self.clock.add(ran=outcome.state == "ran")
        state, detail = describe_outcome(job, outcome)
        if self._bar is not None:
            self._bar.console.print(f"  {state} {detail}", soft_wrap=True)
            self._bar.advance(self._task)
        else:
            self.console.print(f"[{self.clock.finished}/{self.clock.total}] {state} {detail} "
                               f"(eta {format_seconds(self.clock.eta_s())})", soft_wrap=True)
