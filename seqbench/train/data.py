"""Base data module for tasks whose splits are tensors produced by a seeded, pure generator.

A task's data module is a :class:`seqbench.api.TaskData`; :func:`build_task_data` builds one from its
:class:`~seqbench.registry.TaskSpec` and checks it conforms (its :class:`TaskInfo` comes from
:func:`seqbench.configure.resolve.task_info`). A task subclasses :class:`TensorTaskData` and implements ``info()``
and ``generate(split, generator)``. The base class gives every task the same guarantees: each split has its own seed
stream (train, val and test never share one), generated splits are cached on disk under a key of
(task, version, config, seed, split, source), each entry with that identity and the sha256 of its
tensors, both checked on load (a mismatch warns and regenerates), and a data fingerprint hashes the
tensors actually used.

A split may hold extra tensors besides "tokens" and "targets" (e.g. a 0-d "vocab_size" for a task
whose vocabulary comes from its data); they are cached and fingerprinted but not batched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, TensorDataset

from seqbench.configure.resolve import construct_task_data
from seqbench.contracts import TaskData, TaskInfo
from seqbench.registry import TaskSpec
from seqbench.results import atomic_write
from seqbench.train.checkpoints import EpochBatches

SPLITS = ("train", "val", "test")
CACHE_ENV = "SEQBENCH_CACHE_DIR"  # set to "off" to disable the data cache


def split_generator(seed: int, split: str) -> torch.Generator:
    """An independent seed stream per (seed, split): a held-out split never overlaps training's."""
    entropy = np.random.SeedSequence([seed, SPLITS.index(split), 0x5EC0BE]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(entropy[0] >> np.uint64(1)))


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path.home() / ".cache" / "seqbench" / "data"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, shape, dtype and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    return tensors_sha256(tensors)[:16]


class TensorTaskData(L.LightningDataModule):
    """A LightningDataModule over {"tokens", "targets"} tensors generated per split (a TaskData)."""

    # The task's identity in the data cache's key: its TaskSpec's name and version, set by
    # build_task_data (bump the spec's version whenever the generator's output changes). A module
    # built directly, outside the harness, is cached under its class's name instead.
    name: str = ""
    version: int | None = None
    seeded: bool = True  # False for data read from files: the seed then takes no part in the cache key

    def __init__(self, config: Any, seed: int, batch_size: int):
        super().__init__()
        self.config = config
        self.seed = seed
        self.batch_size = batch_size
        self.splits: dict[str, dict[str, torch.Tensor]] = {}
        # split -> ("generated" | "cache", seconds), so `seqbench describe` can report the cost
        self.load_report: dict[str, tuple[str, float]] = {}
        self.train_batches: EpochBatches | None = None  # the training order, made by setup()

    # -- for subclasses ---------------------------------------------------------------------
    def info(self) -> TaskInfo:
        """The batches' shapes (vocab_size, seq_len, num_classes, target, ...); name, causal and metric
        come from the TaskSpec."""
        raise NotImplementedError

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Return {"tokens": (N, T) int64, "targets": (N, T) or (N,) int64} for ``split``."""
        raise NotImplementedError

    def source_key(self) -> str | None:
        """Identity of external input data (e.g. a hash of the files read), part of the cache key."""
        return None

    def split_size(self, split: str) -> int:
        """Examples in ``split``, for configs with ``num_train``/``num_val``/``num_test`` fields."""
        return getattr(self.config, f"num_{split}")

    # -- Lightning --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            self.split_data(split)
        if self.train_batches is None:
            # the training order, a checkpoint can resume from mid-epoch (seqbench.train.checkpoints.ResumeState)
            size = len(self.splits["train"]["tokens"])
            seed = int(torch.randint(2**62, (1,), generator=split_generator(self.seed, "train")))
            self.train_batches = EpochBatches(size, min(self.batch_size, size), seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def data_fingerprint(self) -> str:
        self.setup()
        return fingerprint({f"{s}.{k}": v for s in SPLITS for k, v in self.splits[s].items()})

    # -- internals --------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.splits[split]
        dataset = TensorDataset(data["tokens"], data["targets"])
        # A loader without a generator of its own draws its workers' base seed from the global RNG each
        # time it is iterated (torch's _BaseDataLoaderIter), so every validation pass, and a resumed run's
        # fresh training iterator, would shift the dropout masks after it: a resumed run would not be the
        # run it continues (seqbench.train.checkpoints.ResumeState restores the global RNG).
        generator = torch.Generator().manual_seed(0)
        if shuffle:
            return DataLoader(dataset, batch_sampler=self.train_batches, generator=generator)
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's default DistributedSampler pads a split with repeated examples so that every
            # rank gets as many; an evaluation scores each example once (ranks may differ by a batch).
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler, generator=generator)

    def cache_identity(self, split: str) -> dict[str, Any]:
        """What a cache entry of ``split`` holds: task, version, config, seed, split and source. It is
        the entry's key (hashed into its file name) and is stored in the entry, so an entry copied or
        renamed over another's is recognised as not what was asked for."""
        return json.loads(json.dumps({"task": self.cache_name(), "version": self.version,
                                      "seed": self.seed if self.seeded else None, "split": split,
                                      "config": dataclasses.asdict(self.config), "source": self.source_key()},
                                     sort_keys=True, default=str))

    def cache_key(self, split: str) -> str:
        blob = json.dumps(self.cache_identity(split), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def cache_path(self, split: str) -> Path | None:
        root = cache_dir()
        return root / self.cache_name() / f"{self.cache_key(split)}.pt" if root else None

    def cache_name(self) -> str:
        return self.name or type(self).__name__

    def split_data(self, split: str) -> dict[str, torch.Tensor]:
        """One split, loaded or generated on first use (a generator may need another split, e.g. to
        keep test sequences out of training)."""
        if split not in self.splits:
            self.splits[split] = self._load_or_generate(split)
        return self.splits[split]

    def _load_or_generate(self, split: str) -> dict[str, torch.Tensor]:
        path = self.cache_path(split)
        start = time.perf_counter()
        if path is not None and path.exists():
            try:
                data = _read_entry(path, self.cache_identity(split))
                self.load_report[split] = ("cache", time.perf_counter() - start)
                return data
            except Exception as exc:  # a corrupt, truncated or altered entry is regenerated, never trusted
                warnings.warn(f"data cache entry {path} is not usable ({exc}); regenerating it", stacklevel=2)
                path.unlink(missing_ok=True)
        start = time.perf_counter()
        data = self.generate(split, split_generator(self.seed, split))
        _check_split(data)
        self.load_report[split] = ("generated", time.perf_counter() - start)
        if path is not None:  # a temp file renamed into place, removed if the write fails (a full disk)
            entry = {"tensors": data, "sha256": tensors_sha256(data),
                     "identity": json.dumps(self.cache_identity(split), sort_keys=True)}
            atomic_write(path, lambda tmp: torch.save(entry, tmp))
        return data


def build_task_data(spec: TaskSpec, config: Any, seed: int, batch_size: int) -> TaskData:
    """The task's data module (:func:`~seqbench.configure.resolve.construct_task_data`) with, for a
    :class:`TensorTaskData`, the spec's name and version as its identity in the data cache."""
    data = construct_task_data(spec, config, seed=seed, batch_size=batch_size)
    if isinstance(data, TensorTaskData):
        data.name, data.version = spec.name, spec.version
    return data


def chance_level(targets: torch.Tensor, ignore_index: int) -> float | None:
    """The majority-class rate of the scored labels: the accuracy of always guessing their commonest class
    (a run's ``chance`` column, on its test split).
    (torch.bincount, so a language-modelling split of millions of tokens costs milliseconds.)"""
    labels = targets.reshape(-1)
    labels = labels[labels != ignore_index]
    if labels.numel() == 0:
        return None
    return float(torch.bincount(labels).max()) / labels.numel()


def _read_entry(path: Path, identity: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A cache entry's split, once it says it holds ``identity`` (task, config, split, seed) and its tensors
    match the sha256 stored beside them when it was written: an entry changed since (a disk error, a hand
    edit) or copied over another's (validation over test) must not silently become a run's data."""
    entry = torch.load(path, weights_only=True)
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and "tensors" in entry):
        raise ValueError("it holds no digest of its tensors: damaged, or written by an older seqbench")
    if not isinstance(entry.get("identity"), str):
        raise ValueError("it does not record what it holds: written by an older seqbench")
    held = json.loads(entry["identity"])
    if held != identity:
        differ = ", ".join(f"{k} {held.get(k)!r} not {identity[k]!r}" for k in identity if held.get(k) != identity[k])
        raise ValueError(f"it holds other data than asked for ({differ})")
    data = entry["tensors"]
    _check_split(data)
    if tensors_sha256(data) != entry["sha256"]:
        raise ValueError("its tensors do not match the sha256 recorded when it was written")
    return data


def _check_split(data: Any) -> None:
    if not (isinstance(data, dict) and all(isinstance(data.get(k), torch.Tensor) for k in ("tokens", "targets"))
            and len(data["tokens"]) == len(data["targets"])):
        raise ValueError("a split must be {'tokens': Tensor, 'targets': Tensor} with one row per example")


def row_digests(tokens: torch.Tensor) -> list[bytes]:
    """A 16-byte digest per row: to de-duplicate sequences within and across splits."""
    rows = tokens.contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


# Generators that draw distinct rows give up after this many batches in a row without a new one:
# the configuration's space of distinct sequences is (nearly) exhausted.
MAX_FRUITLESS_BATCHES = 10


def earlier_splits(split: str) -> tuple[str, ...]:
    """The splits generated before ``split``, whose rows it must not repeat: train, then val, then test."""
    return SPLITS[:SPLITS.index(split)]


def take_new_rows(digests: list[bytes], seen: set[bytes], limit: int) -> list[int]:
    """Indices of the rows whose digest is not in ``seen`` yet (they join it), at most ``limit`` of them."""
    keep = []
    for i, digest in enumerate(digests):
        if len(keep) == limit:
            break
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return keep
