"""Sweeps: the grid models x variants x tasks x seeds x overrides, one ``seqbench run`` per cell.

A cell's identity is its resolved RunConfig's ``config_hash()`` (seed included). A sweep skips every
cell whose hash already has a row in ``<results>/runs/``, so re-running a finished sweep does nothing
and re-running an interrupted one (even after ``kill -9``) runs only what is missing: rows are written
atomically at the end of a cell, so a killed cell leaves no row and is simply run again.

``--shard i/n`` (0 <= i < n) keeps every n-th cell of the grid's fixed order, so n processes (a SLURM
array) partition the grid between them and can share one results folder without duplicates.

Workers that share a folder without sharding (several sweeps, a launcher's processes, Ray tasks, SLURM
jobs) claim a cell before running it (:mod:`seqbench.sweeps.claims_lock`): whoever holds the claim runs the
cell, the others skip it, so every cell runs once. :func:`execute` is that rule, and the one function
every launcher (:mod:`seqbench.sweeps.launchers`) runs per cell, in this process or another.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import itertools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from seqbench.configure.config import RunConfig, parse_overrides
from seqbench.configure.replay import config_from_json
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import PluginError, UserError
from seqbench.registry import build_registries, select_variants
from seqbench.results import Status, iter_rows, read_runs, write_run
from seqbench.sweeps.claims_lock import DEFAULT_TIMEOUT_S, Claim, try_claim
from seqbench.train.checkpoints import checkpoint_dir, latest_checkpoint
from seqbench.train.runner import is_oom, launched_as_rank_zero, row_identity, run
from seqbench.train.threads import apply_threads, available_cores


@dataclass(frozen=True)
class Cell:
    index: int  # position in the full grid (before sharding)
    config: RunConfig
    overrides: tuple[str, ...]  # the --set and --grid items that made this cell, for display

    @property
    def key(self) -> str:
        return self.config.config_hash()

    def label(self) -> str:
        extra = f" {' '.join(self.overrides)}" if self.overrides else ""
        return f"{self.config.model}/{self.config.variant} {self.config.task} seed={self.config.seed}{extra}"


@dataclass(frozen=True)
class SweepSpec:
    models: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    variants: tuple[str, ...] | None = None  # None: each model's first variant
    grid: tuple[str, ...] = ()  # "section.key=v1,v2,..." axes
    sets: tuple[str, ...] = ()  # "section.key=value" applied to every cell
    preset: str = "default"
    precision: str = "32-true"
    params: int | None = None  # --params: each model's width solved for this many parameters


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise UserError(f"bad --shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4 (SLURM: "
                        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    return i, n


def _key(item: str) -> str:
    return item.partition("=")[0].strip()


def parse_grid(items: tuple[str, ...], sets: tuple[str, ...] = ()) -> list[list[str]]:
    """``["task.num_nodes=20,40"]`` -> ``[["task.num_nodes=20", "task.num_nodes=40"]]`` (checked by parse_overrides).

    One key is one axis: two axes on a key would keep only the last value and mislabel the cells, and a
    key both on an axis and in ``sets`` (``--set``, ``--max-steps``) would be set twice."""
    keys = [_key(item) for item in items]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UserError(f"--grid gives {twice[0]} twice: list all its values in one axis, e.g. "
                        f"--grid {twice[0]}=V1,V2,V3")
    both = sorted(set(keys) & {_key(item) for item in sets})
    if both:
        raise UserError(f"{both[0]} is both a --grid axis and a --set (or --max-steps) value: keep one of them")
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not choices:
            raise UserError(f"bad --grid {item!r}: expected SECTION.KEY=V1,V2,..., e.g. task.num_nodes=20,40,60")
        axis = [f"{key.strip()}={v}" for v in choices]
        parse_overrides(axis, flag="--grid")  # section and syntax errors now, before any work
        axes.append(axis)
    return axes


def expand(registries, spec: SweepSpec, note: Callable[[str], None] | None = None) -> list[Cell]:
    """Every cell of the grid in a fixed order, each resolved and validated (UserError on a bad one).

    With ``spec.params`` the width is part of each cell's config (so of its hash); ``note`` hears when
    a model has no width within the tolerance."""
    pairs = select_variants([registries.models.get(m) for m in spec.models], spec.variants)
    for task in spec.tasks:
        registries.tasks.get(task)
    if len(set(spec.seeds)) != len(spec.seeds):
        raise UserError(f"--seeds lists a seed twice: {', '.join(map(str, spec.seeds))}")
    axes = parse_grid(spec.grid, spec.sets)
    cells: list[Cell] = []
    seen: set[str] = set()
    for model_spec, variant in pairs:
        for task, combo, seed in itertools.product(spec.tasks, itertools.product(*axes), spec.seeds):
            overrides = (*spec.sets, *combo)
            config = resolve_run_config(registries, model_spec.name, task, variant=variant, preset=spec.preset,
                                        seed=seed, overrides=list(overrides), precision=spec.precision,
                                        params=spec.params, note=note)
            if config.config_hash() in seen:  # e.g. a grid value equal to the preset's
                continue
            seen.add(config.config_hash())
            cells.append(Cell(len(cells), config, tuple(combo)))
    return cells


def shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """Round-robin over the grid's order: shards are disjoint, cover the grid and differ by at most one cell."""
    return [c for c in cells if c.index % count == index]


def failure_row(config: RunConfig, status: str, error: str, wall_time_s: float, device: str | None) -> dict[str, Any]:
    """The result row of a cell that did not finish: its identity, its status and why."""
    return {**row_identity(config), "status": status, "error": error[:2000], "wall_time_s": wall_time_s,
            "device": device}


def run_cell(registries, config: RunConfig, options) -> dict[str, Any]:
    """Run one cell in this process; an exception becomes a ``failed`` (or ``oom``) row, never a crash.

    A cell interrupted after writing a checkpoint (``--checkpoint-every``) resumes from it."""
    t0 = time.perf_counter()
    if latest_checkpoint(checkpoint_dir(options.results_dir, config.config_hash())) is not None:
        options = dataclasses.replace(options, resume=True)
    try:
        return run(registries, config, options)
    # a broken plugin is this cell's failure, said in one line (caught before UserError, its base class)
    except PluginError as exc:
        row = failure_row(config, Status.FAILED, str(exc), time.perf_counter() - t0, options.device)
        row["path"] = str(write_run(options.results_dir, row, [])) if launched_as_rank_zero() else None
        return row
    except (KeyboardInterrupt, UserError):  # a user's mistake stops the sweep: it is no cell's result
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # a full disk is no cell's result, and would fail every cell after it: the sweep stops
        status = Status.OOM if is_oom(exc) else Status.FAILED
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if status == Status.FAILED:
            error += "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
        row = failure_row(config, status, error, time.perf_counter() - t0, options.device)
        # under DDP every rank fails alike: rank 0 alone records it, as it records a finished run
        row["path"] = str(write_run(options.results_dir, row, [])) if launched_as_rank_zero() else None
        return row
    finally:
        gc.collect()


@dataclass(frozen=True)
class CellJob:
    """One cell as a worker anywhere needs it: plain, picklable data (no registries, no classes)."""

    key: str  # the cell's config_hash
    label: str
    config_json: str  # rebuilt by the worker (seqbench.configure.replay), checked against ``key``
    options: Any  # seqbench.train.runner.RunOptions
    threads: int  # torch threads for this cell (seqbench.train.threads)
    claim_timeout_s: float = DEFAULT_TIMEOUT_S
    retry_failed: bool = False


@dataclass(frozen=True)
class CellOutcome:
    """What became of a job: ``ran`` (``row`` is its row), ``done`` (another worker wrote its row first),
    ``claimed`` (another worker is running it: ``detail`` names it) or ``lost`` (the worker died or could
    not start the cell: ``detail`` says why; no row, so a re-launch runs it)."""

    key: str
    state: str
    row: dict[str, Any] | None = None
    detail: str = ""


def make_jobs(cells: list[Cell], options, threads: int, claim_timeout_s: float = DEFAULT_TIMEOUT_S,
              retry_failed: bool = False) -> list[CellJob]:
    return [CellJob(c.key, c.label(), c.config.to_json(), options, threads, claim_timeout_s, retry_failed)
            for c in cells]


_worker_registries = None


def _registries_of_this_process():
    """Registries for a worker process (built once per process: plugins load in seconds, not per cell)."""
    global _worker_registries
    if _worker_registries is None:
        _worker_registries = build_registries()
    return _worker_registries


def execute(job: CellJob, registries=None) -> CellOutcome:
    """Run one cell under the claim rules: claim it, run it unless its row exists by now, release it."""
    registries = registries if registries is not None else _registries_of_this_process()
    results = job.options.results_dir
    claim = try_claim(results, job.key, job.claim_timeout_s)
    if not isinstance(claim, Claim):
        return CellOutcome(job.key, "claimed", detail=claim.describe() if claim else "a claim being written")
    with claim:
        if job.retry_failed:
            _remove_failed(results, {job.key})
        if _has_row(results, job.key, job.retry_failed):  # finished by another worker while this job waited
            return CellOutcome(job.key, "done")
        config = config_from_json(registries, job.config_json, expected_hash=job.key, where=job.label)
        apply_threads(job.threads)
        return CellOutcome(job.key, "ran", row=run_cell(registries, config, job.options))


def run_sweep(registries, cells: list[Cell], options, threads: int | None = None,
              claim_timeout_s: float = DEFAULT_TIMEOUT_S, retry_failed: bool = False) -> list[dict[str, Any]]:
    """Run the given cells one after another in this process, under the claim rules; return the rows
    of the cells it ran."""
    jobs = make_jobs(cells, options, threads or available_cores(), claim_timeout_s, retry_failed)
    return [outcome.row for outcome in (execute(job, registries) for job in jobs) if outcome.row is not None]


RETRYABLE = (Status.FAILED, Status.OOM)


def _missing(results_dir: Path, keys: set[str], retry_failed: bool = False, on_unreadable=None) -> set[str]:
    """The keys without a row in ``results_dir`` (with ``retry_failed``: without a row that did not fail)."""
    rows = iter_rows(read_runs(results_dir, on_unreadable=on_unreadable, columns=["config_hash", "status"]))
    return keys - {r["config_hash"] for r in rows if not (retry_failed and r["status"] in RETRYABLE)}


# (runs folder, file name) -> (config_hash, status): run files never change once written (one file per
# run, renamed into place), so a worker reads each one once, however many cells it checks.
_row_cache: dict[tuple[str, str], tuple[str, str]] = {}


def _has_row(results_dir: Path, key: str, retry_failed: bool = False) -> bool:
    folder = Path(results_dir) / "runs"
    statuses = []
    for path in folder.glob("[!.]*.parquet"):  # hidden: writes in flight
        entry = _row_cache.get((str(folder), path.name))
        if entry is None:
            try:
                row = pq.read_table(path, columns=["config_hash", "status"]).to_pylist()[0]
            except Exception:  # unreadable: reported when the sweep listed its cells
                continue
            entry = _row_cache[(str(folder), path.name)] = (row["config_hash"], row["status"])
        if entry[0] == key:
            statuses.append(entry[1])
    return any(not (retry_failed and status in RETRYABLE) for status in statuses)


def pending(cells: list[Cell], results_dir: Path, on_unreadable=None, retry_failed: bool = False) -> list[Cell]:
    """Cells without a row yet in ``results_dir``; with ``retry_failed`` also those whose rows all failed."""
    missing = _missing(results_dir, {c.key for c in cells}, retry_failed, on_unreadable)
    return [c for c in cells if c.key in missing]


def _remove_failed(results_dir: Path, keys: set[str]) -> int:
    # unreadable files were reported when the pending cells were read; they are not touched here
    rows = iter_rows(read_runs(results_dir, on_unreadable=lambda path, exc: None,
                               columns=["run_id", "config_hash", "status"]))
    failed = [r["run_id"] for r in rows if r["config_hash"] in keys and r["status"] in RETRYABLE]
    for run_id in failed:
        (Path(results_dir) / "runs" / f"{run_id}.parquet").unlink(missing_ok=True)  # write_run's file name
    return len(failed)
