"""Checkpoints a run can resume from exactly, and saved models ``seqbench eval`` can test again.

A killed run resumed from its last checkpoint must end with the same metrics as an uninterrupted one,
so a checkpoint holds everything that decides the rest of training: Lightning's own part (weights,
optimizer, scheduler, loop counters; ``ModelCheckpoint`` writes it), the module's bookkeeping
(``SeqbenchModule.on_save_checkpoint``: curve, steps, lambda), a model's non-tensor state through
``nn.Module.get_extra_state`` (TGN's lambda schedule), and, here, the data position and the RNG states
(:class:`ResumeState`) and the wall time spent so far (:class:`WallClock`: a resumed run's row counts
every segment's seconds, not only the last one's). The training order is :class:`EpochBatches`: a
permutation per epoch drawn from (seed, epoch), so a resumed run can start in the middle of an epoch on
the very next batch.

Checkpoints live under ``<results>/checkpoints/<config_hash>/``: one configuration, one folder.
"""

from __future__ import annotations

import random
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import Sampler

from seqbench.errors import UserError
from seqbench.results import atomic_write

CHECKPOINT_SUFFIX = ".ckpt"


class EpochBatches(Sampler[list[int]]):
    """Shuffled batches of ``size`` examples, epoch after epoch, that can start at any global batch.

    Epoch ``e`` is ``randperm(size)`` from a generator seeded with ``seed + e`` (incomplete last batch
    dropped, as ``drop_last`` does). Lightning calls ``iter()`` once per epoch; each call yields the
    rest of the epoch that ``start`` falls in, so after :meth:`start_at` the next batch is exactly the
    one an uninterrupted run would have drawn.

    Under DDP each of the ``world`` processes takes every ``world``-th batch of the epoch (from its rank
    on), so the runner turns off Lightning's distributed-sampler injection for it.
    """

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed  # batch_size <= size
        self.next_batch = 0  # this process's count of batches handed out (all epochs)

    def start_at(self, batch: int) -> None:
        self.next_batch = batch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return max(1, self.size // self.batch_size // self._rank_world()[1])

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._rank_world()
        per_epoch = len(self)
        epoch, offset = divmod(self.next_batch, per_epoch)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        for j in range(offset, per_epoch):
            self.next_batch += 1
            b = (j * world + rank) % (self.size // self.batch_size)  # wraps only when ranks outnumber batches
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()


def _rng_states() -> dict[str, Any]:
    # numpy's state array travels as a tensor so that the checkpoint loads with weights_only=True
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_as_tuples(states["python"]))
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples; a checkpoint may give lists back."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class ResumeState(L.Callback):
    """The part of a run's state Lightning does not checkpoint: training batches consumed (the data
    position) and the RNG states. Restored before the training loader is built."""

    def __init__(self) -> None:
        self.batches = 0
        self._rng: dict[str, Any] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1  # before the checkpoint of this step is written (checkpointing runs at batch end)

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rng": _rng_states()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]
        self._rng = state["rng"]

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._rng is None:
            return
        _set_rng_states(self._rng)
        batches = getattr(trainer.datamodule, "train_batches", None)
        if not isinstance(batches, EpochBatches):
            raise UserError(f"task data {type(trainer.datamodule).__name__} cannot resume mid-training: its "
                            "training loader does not draw from seqbench.train.checkpoints.EpochBatches")
        batches.start_at(self.batches)


class WallClock(L.Callback):
    """A run's wall time across its segments: the seconds its checkpoint recorded (the earlier segments)
    plus this segment's since ``started`` (a ``time.perf_counter()`` reading). Without it a run resumed
    after an interruption would report only its last segment as its wall_time_s, and every cost read from
    the rows (core-hours, s per step) would undercount the runs that were interrupted."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.before = 0.0  # the earlier segments' seconds, from the checkpoint resumed

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = float(state["seconds"])


def checkpoint_dir(results_dir: Path, config_hash: str) -> Path:
    return Path(results_dir) / "checkpoints" / config_hash


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after this training batch: every ``val_check_batch`` batches,
    counted over the run (seqbench.train.runner sets ``check_val_every_n_epoch=None``)."""
    every = trainer.val_check_batch
    return (bool(trainer.enable_validation) and isinstance(every, int) and every > 0
            and trainer.global_step % every == 0)


class StepCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint every N optimizer steps, saving a step that an evaluation follows after
    that evaluation (Lightning's own deferred save, at validation end). Saved at the batch's end, before
    it, the checkpoint would lack the evaluation, and Lightning, restarting there, fast-forwards past it as
    if it had run: the curve would miss the point, and a target or plateau stop decided there would come
    one evaluation late."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if due and validation_follows(trainer) and not self._should_skip_saving_checkpoint(trainer):
            self._defer_save_until_validation = True  # ModelCheckpoint.on_validation_end saves it
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def checkpoint_callback(folder: Path, every_steps: int, keep: int) -> ModelCheckpoint:
    """A :class:`StepCheckpoint` every ``every_steps`` optimizer steps, keeping the ``keep`` latest
    (ranked by step, the largest kept; both counts checked by seqbench.train.preflight)."""
    return StepCheckpoint(dirpath=folder, filename="step={step}", auto_insert_metric_name=False,
                          monitor="step", mode="max", save_top_k=keep, every_n_train_steps=every_steps,
                          save_on_train_epoch_end=False, enable_version_counter=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing to a temp file beside the checkpoint and renaming it into
    place (:func:`seqbench.results.atomic_write`). Lightning's own "atomic" save stages the file in the
    system's temp folder and moves it, which is a copy, not a rename, when the results folder is on
    another file system (a cluster's shared one): a job killed meanwhile leaves a truncated checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        parent = super()
        atomic_write(Path(path), lambda tmp: parent.save_checkpoint(checkpoint, tmp, storage_options))


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``, the highest step first."""
    steps = []
    for path in Path(folder).glob(f"step=*{CHECKPOINT_SUFFIX}"):
        match = re.fullmatch(rf"step=(\d+){re.escape(CHECKPOINT_SUFFIX)}", path.name)
        if match:
            steps.append((int(match.group(1)), path))
    return [path for _, path in sorted(steps, reverse=True)]


# (path, mtime_ns): each damaged file is named once per process, and each good one loaded once to check
# it (a run's checks, its resume and a sweep's cell all ask; a rewritten file has another mtime)
_warned: set[tuple[str, int]] = set()
_loaded: set[tuple[str, int]] = set()


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of the highest step in ``folder`` that loads, or None.

    One that does not load (truncated by a full disk or a copy, damaged) is skipped with a warning
    naming it, and the next older one is tried: a damaged newest checkpoint costs the steps since the
    one before it, never the cell. ``run --resume`` and a sweep's automatic resume both come here."""
    for path in checkpoints_newest_first(folder):
        key = (str(path), _mtime_ns(path))
        if key in _loaded:
            return path
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            _loaded.add(key)
            return path
        except Exception as exc:
            if key not in _warned:
                _warned.add(key)
                warnings.warn(f"checkpoint {path} does not load ({type(exc).__name__}: {exc}); skipping it "
                              "for the next older one", stacklevel=2)
    return None


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def checkpoint_run_id(path: Path) -> str | None:
    """The run id a checkpoint was written by (a resumed run keeps it, so its live curve continues)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("seqbench", {}).get("run_id")


# ---------------------------------------------------------------------------------- saved models


def model_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "models" / f"{run_id}.pt"


def save_model(results_dir: Path, run_id: str, module: torch.nn.Module, config_json: str) -> Path:
    """The final weights (tensors and plain values only, so they load with weights_only=True) and the
    resolved config they were trained with, written atomically."""
    path = model_path(results_dir, run_id)
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save({"run_id": run_id, "config_json": config_json, "state_dict": state}, tmp))
    return path


def load_model_file(results_dir: Path, run_id: str) -> dict[str, Any]:
    """A saved model (:func:`save_model`); UserError naming the file when it is absent or does not load."""
    path = model_path(results_dir, run_id)
    if not path.exists():
        raise UserError(f"no saved model for run {run_id} at {path}: only runs made with --save-model can be "
                        "evaluated again")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"saved model {path} does not load ({type(exc).__name__}: {exc}); it is damaged: "
                        "re-run the run with --save-model") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("config_json"), str)
            and isinstance(saved.get("state_dict"), dict)):
        raise UserError(f"saved model {path} is not a seqbench model file (no config_json and state_dict); "
                        "re-run the run with --save-model")
    return saved
