"""SIGTERM and SIGINT stop a run cleanly: no ``ok`` row, a checkpoint first when checkpoints are on, and
exit 143 / 130 (:class:`seqbench.errors.RunInterrupted`).

SIGTERM is what SLURM sends at a time limit or a pre-emption, what ``timeout`` and a plain ``kill``
send. Lightning 2.x (2.6.6 here) catches it itself: its signal connector sets
``trainer.received_sigterm`` and the training loop raises ``SIGTERMException``, a ``SystemExit`` with
no code, at the end of the current batch, so without this module a SIGTERMed run exited 0 with no row
and a sweep silently skipped its remaining cells. Ctrl-C (SIGINT) became Lightning's ``sys.exit(1)``.

:class:`seqbench.process.SignalWatch` (the CLI installs it) records the signal; while Lightning trains it
defers, and :class:`StopOnSignal` ends training at the next batch boundary, after saving a checkpoint
of that step when the run keeps checkpoints (what a pre-empted job needs); :func:`interruptible_fit`
turns whatever stopped training (that, or Lightning's own SIGTERMException where no watch is
installed) into RunInterrupted naming the steps done and the checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqbench.errors import RunInterrupted
from seqbench.process import DEFER, active
from seqbench.train.checkpoints import CHECKPOINT_SUFFIX, latest_checkpoint, validation_follows


class StopOnSignal(L.Callback):
    """Ends training at the batch boundary after a deferred signal, saving a checkpoint of that step
    first when ``folder`` is given (the run keeps checkpoints), then raising RunInterrupted. At a step an
    evaluation follows, it waits for that evaluation (see seqbench.train.checkpoints.StepCheckpoint).

    The runner lists it after the early-stopping callbacks, so that evaluation's counts are in the
    checkpoint it saves."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._after_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        watch = active()
        if watch is None or watch.signum is None:
            return
        if validation_follows(trainer):
            self._after_validation = True
            return
        self._stop(trainer, watch.signum)

    def on_validation_end(self, trainer, pl_module) -> None:
        watch = active()
        if self._after_validation and watch is not None and watch.signum is not None and not trainer.sanity_checking:
            self._stop(trainer, watch.signum)

    def _stop(self, trainer, signum: int) -> None:
        if self.folder is not None:
            trainer.save_checkpoint(Path(self.folder) / f"step={trainer.global_step}{CHECKPOINT_SUFFIX}")
        raise RunInterrupted(signum)


@contextlib.contextmanager
def interruptible_fit(steps: Callable[[], int], folder: Path | None) -> Iterator[None]:
    """Around ``trainer.fit``: signals wait for a batch boundary (:class:`StopOnSignal`), and however
    training was stopped by one (ours, or Lightning's SIGTERMException where no watch is installed,
    e.g. through the Python API), what comes out is RunInterrupted with the steps done and the
    checkpoint to resume from."""
    watch = active()
    try:
        with watch.in_mode(DEFER) if watch is not None else contextlib.nullcontext():
            yield
    except (RunInterrupted, SIGTERMException) as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGTERM
        raise _with_progress(signum, steps(), folder) from None
    if watch is not None and watch.signum is not None:  # came while fit was in none of its batches
        raise _with_progress(watch.signum, steps(), folder)


def _with_progress(signum: int, steps: int, folder: Path | None) -> RunInterrupted:
    checkpoint = latest_checkpoint(folder) if folder is not None else None
    return RunInterrupted(signum, steps=steps, checkpoint=str(checkpoint) if checkpoint else None)
