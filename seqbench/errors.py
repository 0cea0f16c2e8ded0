"""The one exception type for a user's mistake (the CLI prints its message and exits 2), and the one for
a run stopped by a signal."""

import signal


class UserError(Exception):
    """Bad input from the user (unknown name, invalid value, missing data).

    The message must say what was wrong and what to do; the CLI prints it without a traceback.
    """


class PluginError(UserError):
    """A plugin that breaks seqbench's contract (a build target that does not import, a model output
    of the wrong shape), named in the message. ``seqbench run`` exits 2 on it like on any user's
    mistake; a sweep records it as the cell's failed row, with this one-line message as its error."""


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT stopped a run or a sweep (seqbench.train.interrupt). A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` records it as a cell's ``failed`` row: an
    interrupted cell has no row, and the next launch runs (or resumes) it.

    The CLI prints :meth:`describe` and exits ``128 + signum`` (143 for SIGTERM, 130 for SIGINT), the
    codes a shell gives a process that a signal ended."""

    def __init__(self, signum: int, steps: int | None = None, checkpoint: str | None = None, note: str = ""):
        super().__init__(signum, steps, checkpoint)
        self.signum, self.steps, self.checkpoint = signum, steps, checkpoint
        self.note = note  # replaces the run's advice (a sweep says what became of its cells)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        name = signal.Signals(self.signum).name
        done = f" after {self.steps} steps" if self.steps is not None else ""
        if self.note:
            return f"interrupted by {name}; {self.note}"
        if self.checkpoint:
            return (f"interrupted by {name}{done}, no row written; checkpoint {self.checkpoint} saved: the same "
                    "command with --resume (a sweep: the same sweep) continues from it")
        return (f"interrupted by {name}{done}, no row written; run it again (with --checkpoint-every N a "
                "later interruption leaves a checkpoint to resume from)")
