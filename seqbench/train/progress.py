"""A run's progress over its total steps, for a person in a terminal or reading a log.

In a terminal: one rich bar over ``max_steps`` with elapsed time, ETA, the training loss and the latest
validation metric. Elsewhere (a log file, a pipe): one plain line at most every ``interval_s`` seconds,
so a long run shows it is alive without filling the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS (M:SS under an hour), for the ETA and elapsed time of runs and sweeps ("?" when unknown)."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RunProgress(L.Callback):
    """Progress of one run over its total steps; ``metric`` names the validation metric shown."""

    def __init__(self, total_steps: int, metric: str, console=None, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, refresh_steps: int = 10):
        self.total = total_steps
        self.metric = metric
        self.console = console or Console()
        self.interval_s = interval_s
        self.clock = clock
        self.refresh_steps = refresh_steps  # terminal redraws cost ~1 ms: not every step
        self._bar = None
        self._task = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_line = 0.0

    # --------------------------------------------------------------------- what is shown
    def _status(self, trainer, pl_module) -> str:
        parts = []
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if self.metric in pl_module.latest_val:
            parts.append(f"val {self.metric} {pl_module.latest_val[self.metric]:.4f}")
        return "  ".join(parts)

    def line(self, trainer, pl_module) -> str:
        """The plain progress line: step/total, loss, latest validation metric, tokens/s, ETA."""
        step = trainer.global_step
        elapsed = self.clock() - self._start_time
        done = step - self._start_step
        parts = [f"step {step}/{self.total}", self._status(trainer, pl_module)]
        rate = trainer.callback_metrics.get("tokens_per_sec")
        if rate is not None:
            parts.append(f"{float(rate):,.0f} tokens/s")
        eta = elapsed / done * (self.total - step) if done > 0 else None
        parts.append(f"elapsed {format_seconds(elapsed)}")
        parts.append(f"ETA {format_seconds(eta)}" if eta is not None else "ETA ?")
        return "  ".join(p for p in parts if p)

    # ------------------------------------------------------------------------ Lightning
    def on_train_start(self, trainer, pl_module) -> None:
        self._start_time = self._last_line = self.clock()
        self._start_step = trainer.global_step  # a resumed run's ETA counts only its own steps
        if self.console.is_terminal:
            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, completed=trainer.global_step, status="")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is not None:
            if trainer.global_step % self.refresh_steps == 0 or trainer.global_step >= self.total:
                self._bar.update(self._task, completed=trainer.global_step,
                                 status=self._status(trainer, pl_module))
        elif self.clock() - self._last_line >= self.interval_s:
            self._last_line = self.clock()
            self.console.print(self.line(trainer, pl_module), highlight=False, soft_wrap=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._bar is not None and not trainer.sanity_checking:
            self._bar.update(self._task, status=self._status(trainer, pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
