"""Sweeps: the grid models x variants x tasks x seeds x overrides, one ``seqbench run`` per cell.

A cell's identity is its resolved RunConfig's ``config_hash()`` (seed included). A sweep skips every
cell whose hash already has a row in ``<results>/runs/``, so re-running a finished sweep does nothing
and re-running an interrupted one (even after ``kill -9``) runs only what is missing: rows are written
atomically at the end of a cell, so a killed cell leaves no row and is simply run again.

``--shard i/n`` (0 <= i < n) keeps every n-th cell of the grid's fixed order, so n processes (a SLURM
array) partition the grid between them and can share one results folder without duplicates.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.config import RunConfig, parse_overrides
from seqbench.errors import UserError


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


def parse_grid(items: tuple[str, ...]) -> list[list[str]]:
    """``["task.num_nodes=20,40"]`` -> ``[["task.num_nodes=20", "task.num_nodes=40"]]`` (checked by parse_overrides)."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not choices:
            raise UserError(f"bad --grid {item!r}: expected SECTION.KEY=V1,V2,..., e.g. task.num_nodes=20,40,60")
        axis = [f"{key.strip()}={v}" for v in choices]
        parse_overrides(axis)  # section and syntax errors now, before any work
        axes.append(axis)
    return axes


def expand(registries, spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid in a fixed order, each resolved and validated (UserError on a bad one)."""
    from seqbench.registry import select_variants
    from seqbench.runner import resolve_run_config

    pairs = select_variants([registries.models.get(m) for m in spec.models], spec.variants)
    for task in spec.tasks:
        registries.tasks.get(task)
    if len(set(spec.seeds)) != len(spec.seeds):
        raise UserError(f"--seeds lists a seed twice: {', '.join(map(str, spec.seeds))}")
    axes = parse_grid(spec.grid)
    cells: list[Cell] = []
    seen: set[str] = set()
    for model_spec, variant in pairs:
        for task, combo, seed in itertools.product(spec.tasks, itertools.product(*axes), spec.seeds):
            overrides = (*spec.sets, *combo)
            config = resolve_run_config(registries, model_spec.name, task, variant=variant, preset=spec.preset,
                                        seed=seed, overrides=list(overrides), precision=spec.precision)
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
    from seqbench.runner import row_identity

    return {**row_identity(config), "status": status, "error": error[:2000], "wall_time_s": wall_time_s,
            "device": device}


def run_cell(registries, cell: Cell, options) -> dict[str, Any]:
    """Run one cell in this process; an exception becomes a ``failed`` (or ``oom``) row, never a crash.

    A cell interrupted after writing a checkpoint (``--checkpoint-every``) resumes from it."""
    import dataclasses
    import time

    from seqbench.bench import is_oom
    from seqbench.checkpoints import checkpoint_dir, latest_checkpoint
    from seqbench.results import write_run
    from seqbench.runner import run

    t0 = time.perf_counter()
    if latest_checkpoint(checkpoint_dir(options.results_dir, cell.key)) is not None:
        options = dataclasses.replace(options, resume=True)
    try:
        return run(registries, cell.config, options)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        status = "oom" if is_oom(exc) else "failed"
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if status == "failed":
            error += "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
        row = failure_row(cell.config, status, error, time.perf_counter() - t0, options.device)
        row["path"] = str(write_run(options.results_dir, row, []))
        return row
    finally:
        import gc

        gc.collect()


def run_sweep(registries, cells: list[Cell], options,
              on_start: Callable[[Cell], None] | None = None,
              on_done: Callable[[Cell, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the given cells in order; return their rows."""
    rows = []
    for cell in cells:
        if on_start is not None:
            on_start(cell)
        row = run_cell(registries, cell, options)
        rows.append(row)
        if on_done is not None:
            on_done(cell, row)
    return rows


RETRYABLE = ("failed", "oom")


def pending(cells: list[Cell], results_dir: Path, on_unreadable=None, retry_failed: bool = False) -> list[Cell]:
    """Cells without a row yet in ``results_dir``; with ``retry_failed`` also those whose rows all failed."""
    from seqbench.results import iter_rows, read_runs

    rows = iter_rows(read_runs(results_dir, on_unreadable=on_unreadable, columns=["config_hash", "status"]))
    done = {r["config_hash"] for r in rows if not (retry_failed and r["status"] in RETRYABLE)}
    return [c for c in cells if c.key not in done]


def remove_failed_rows(cells: list[Cell], results_dir: Path) -> int:
    """Delete the failed/oom row files of ``cells`` (before retrying them); return how many."""
    from seqbench.results import iter_rows, read_runs

    keys = {c.key for c in cells}
    # unreadable files were reported when the pending cells were read; they are not touched here
    rows = iter_rows(read_runs(results_dir, on_unreadable=lambda path, exc: None,
                               columns=["run_id", "config_hash", "status"]))
    failed = [r["run_id"] for r in rows if r["config_hash"] in keys and r["status"] in RETRYABLE]
    for run_id in failed:
        (Path(results_dir) / "runs" / f"{run_id}.parquet").unlink(missing_ok=True)  # write_run's file name
    return len(failed)
