"""Every file format seqbench writes and reads: the Parquet schemas, the status names, atomic writes
and the readers. Nothing else defines a column or a status.

``<results>/runs/<run_id>.parquet``: one row per run (:data:`RUN_SCHEMA`).
``<results>/curves/<run_id>.parquet``: one row per evaluation / training step (:data:`CURVE_SCHEMA`).
``<results>/bench/<bench_id>.parquet``: one row per benchmark measurement (:data:`BENCH_SCHEMA`).

Every file is written atomically (a temp file in the same folder, then ``os.replace``), so a killed
process never leaves a half-written row for readers; it is created with the process's umask. A killed
writer's temp file is removed by the next writer or reader of its folder. Readers take a folder as one
dataset and skip, with a warning naming it, any file they cannot read or whose schema does not match.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from seqbench.process import pid_alive


class Status:
    """The status names a row may hold (column ``status``)."""

    OK = "ok"  # finished; its metrics are valid
    DIVERGED = "diverged"  # a run whose loss became non-finite (training stopped there)
    FAILED = "failed"  # raised; ``error`` says why
    OOM = "oom"  # ran out of memory
    TIMEOUT = "timeout"  # a benchmark length over its time budget
    UNSUPPORTED = "unsupported"  # an evaluation length the model cannot run at (e.g. learned positions)


RUN_STATUSES = (Status.OK, Status.DIVERGED, Status.FAILED, Status.OOM)
BENCH_STATUSES = (Status.OK, Status.OOM, Status.TIMEOUT, Status.FAILED)
EVAL_STATUSES = (Status.OK, Status.UNSUPPORTED, Status.FAILED)

# The columns every run row has, in order. Models and tasks may add float columns of their own
# (e.g. accuracy_hard, gate_mean; chance: the test split's majority-class rate); readers see them as
# nulls for runs that lack them.
RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("model", pa.string()),
    ("variant", pa.string()),
    ("task", pa.string()),
    ("task_version", pa.int64()),
    ("preset", pa.string()),
    ("seed", pa.int64()),
    ("status", pa.string()),  # one of RUN_STATUSES
    ("error", pa.string()),  # why a run failed, else null
    ("accuracy", pa.float64()),  # test accuracy over scored positions
    ("loss", pa.float64()),  # test cross-entropy per scored position
    ("perplexity", pa.float64()),  # exp(loss), for language-modelling tasks, else null
    ("val_accuracy", pa.float64()),  # the final validation pass (whole split, last step's weights)
    ("val_loss", pa.float64()),
    ("val_perplexity", pa.float64()),  # exp(val_loss) for language-modelling tasks, else null
    ("gate_rate", pa.float64()),  # fraction of test gates above threshold, null for ungated models
    ("stop_reason", pa.string()),  # target | plateau | budget | diverged (seqbench.train.stopping); null in old rows
    ("best_val_step", pa.float64()),  # the step of the curve's best validation accuracy (loss for language models)
    ("best_val", pa.float64()),  # that best value
    ("val_trend", pa.float64()),  # its change over the last 20% of evaluations (least-squares line)
    ("tokens_per_sec", pa.float64()),  # training throughput
    ("n_params", pa.int64()),
    ("param_budget", pa.int64()),  # --params N the width was solved for, else null
    ("state_size", pa.int64()),  # elements carried from one token to the next at the task's length, else null
    ("steps", pa.int64()),
    ("wall_time_s", pa.float64()),
    ("device", pa.string()),
    ("threads", pa.int64()),  # torch intra-op threads in use when training ended (seqbench.train.threads)
    ("kernels", pa.string()),
    ("seqbench_version", pa.string()),
    ("torch_version", pa.string()),
    ("git_sha", pa.string()),
    ("config_hash", pa.string()),
    ("config_json", pa.string()),
    ("data_fingerprint", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
])

# A curve point: its run and step; every other column is a float metric of that point (loss,
# accuracy, gate_rate, lambda, train_*, rank_layer*, a model's extras), null where a point lacks it.
CURVE_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("step", pa.float64()),
])

BENCH_SCHEMA = pa.schema([
    ("bench_id", pa.string()),
    ("model", pa.string()),
    ("variant", pa.string()),
    ("preset", pa.string()),
    ("mode", pa.string()),  # train (forward + backward + optimizer step) | infer (forward, no grad)
    ("seq_len", pa.int64()),
    ("batch_size", pa.int64()),
    ("status", pa.string()),  # one of BENCH_STATUSES
    ("error", pa.string()),
    ("tokens_per_sec", pa.float64()),  # batch_size * seq_len / median step time
    ("step_time_s", pa.float64()),  # median of the timed steps
    ("timed_steps", pa.int64()),
    ("peak_mem_bytes", pa.int64()),
    ("mem_kind", pa.string()),  # cuda_allocator | process_rss | process_rss_cumulative
    ("flops_per_token", pa.float64()),  # counted FLOPs of one step / tokens in it
    ("peak_flops", pa.float64()),  # FLOP/s of a large matmul measured in this run
    ("mfu", pa.float64()),  # flops_per_token * tokens_per_sec / peak_flops
    ("forced_gate_rate", pa.float64()),  # the fraction of gated units fixed by --gate-rate, else null
    ("gate_rate_source", pa.string()),  # forced | learned (the model's own gate) | null (ungated)
    ("gate_rate", pa.float64()),  # learned gates: fraction above threshold in the timed steps (null if forced)
    ("n_params", pa.int64()),
    ("param_budget", pa.int64()),  # --params N the width was solved for (at the shortest length), else null
    ("kernels", pa.string()),
    ("device", pa.string()),
    ("dtype", pa.string()),
    ("seqbench_version", pa.string()),
    ("torch_version", pa.string()),
    ("git_sha", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
])

# <results>/evals/<run_id>.parquet: one row per length a trained model was tested at (--eval-lengths).
# Gated models add the hard-gated pass's columns (accuracy_hard, ...) as extra float columns.
EVAL_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("seq_len", pa.int64()),  # the task's length key (TaskSpec.length_key) at this evaluation
    ("length_key", pa.string()),  # which task setting that is, e.g. seq_len, num_nodes
    ("trained_len", pa.int64()),  # its value in training
    ("status", pa.string()),  # one of EVAL_STATUSES
    ("error", pa.string()),  # why unsupported or failed, else null
    ("accuracy", pa.float64()),
    ("loss", pa.float64()),
])


@dataclass(frozen=True)
class FileFormat:
    """One kind of results file: its folder under ``<results>``, its columns, and what readers demand."""

    folder: str
    schema: pa.Schema  # the declared columns; any other column must be numeric and is read as float64
    required: tuple[str, ...]  # every writer fills these: a file without one, or with a null, is skipped
    json_objects: tuple[str, ...] = ()  # JSON-object columns: a row where one does not parse is skipped


RUNS = FileFormat("runs", RUN_SCHEMA, required=("run_id", "model", "variant", "task", "task_version", "preset",
                                                 "seed", "status"), json_objects=("config_json",))
CURVES = FileFormat("curves", CURVE_SCHEMA, required=("run_id", "step"))
BENCH = FileFormat("bench", BENCH_SCHEMA, required=("bench_id", "model", "variant", "preset", "mode", "seq_len",
                                                    "status", "device"))
EVALS = FileFormat("evals", EVAL_SCHEMA, required=("run_id", "seq_len", "status"))


# ------------------------------------------------------------------------------- writing

# A write takes well under a second: a temp file untouched this long has lost its writer.
STALE_TEMP_SECONDS = 15 * 60
TEMP_PREFIX = ".tmp-"
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
# .tmp-<host>-<pid>-<mkstemp's random part><suffix>: the name says whose write it is
_TEMP_NAME = re.compile(r"\.tmp-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[a-z0-9_]+(\.\w+)?")
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``): ``os.umask`` can
    only read it by setting it, which would race with threads creating files meanwhile."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """A temp file whose writer is gone: a dead process of this host, or untouched for STALE_TEMP_SECONDS
    (a writer on another host, or a temp file named by an older seqbench)."""
    match = _TEMP_NAME.fullmatch(path.name)
    if match and match["host"] == _HOST and not pid_alive(int(match["pid"])):
        return True
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:  # removed meanwhile
        return False
    return age > STALE_TEMP_SECONDS


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the stale temp files of ``folder`` (see :func:`is_stale_temp`); return those removed."""
    removed = []
    for path in Path(folder).glob(f"{TEMP_PREFIX}*"):
        if is_stale_temp(path):
            try:
                path.unlink()
            except OSError:  # gone already, or a folder we may only read
                continue
            removed.append(path)
    return removed


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` into a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; results shared with a group need the mode any other new file gets
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_table(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    """A text export (e.g. a leaderboard) written like every other result: temp file, then rename."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """``rows`` as a table: ``schema``'s columns first, then any extra numeric columns in sorted order."""
    fields = list(schema)
    for name in sorted(set().union(*rows) - set(schema.names)):
        fields.append(pa.field(name, pa.float64()))
    full = pa.schema(fields)
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in full} for row in rows], schema=full)


def _one_row(schema: pa.Schema, row: dict[str, Any]) -> pa.Table:
    return _table([row], schema)


def run_table(row: dict[str, Any]) -> pa.Table:
    return _one_row(RUN_SCHEMA, row)


def evals_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / EVALS.folder / f"{run_id}.parquet"


def read_run_evals(results_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """One run's earlier length evaluations ([] when none); raises when the file does not read as evals."""
    path = evals_path(results_dir, run_id)
    if not path.exists():
        return []
    conforming_schema(pq.read_schema(path), EVALS)
    return pq.read_table(path).to_pylist()


def write_evals(results_dir: Path, run_id: str, rows: list[dict[str, Any]]) -> Path:
    """One run's length evaluations, as one file, written atomically: the new rows replace earlier rows
    at the same lengths (``seqbench eval`` run again), the others stay."""
    path = Path(results_dir) / EVALS.folder / f"{run_id}.parquet"
    new = {row["seq_len"] for row in rows}
    earlier = pq.read_table(path).to_pylist() if path.exists() else []
    kept = [row for row in earlier if row.get("seq_len") not in new]
    atomic_write_table(_table([*kept, *({"run_id": run_id, **row} for row in rows)], EVAL_SCHEMA), path)
    return path


def write_curve(results_dir: Path, run_id: str, curve: list[dict[str, float]]) -> None:
    """(Re)write a run's curve file; also during the run, after each evaluation (seqbench.train.tracking)."""
    # points may carry different keys (evaluation vs per-step training points): take the union
    names = [n for n in dict.fromkeys(key for point in curve for key in point) if n not in CURVE_SCHEMA.names]
    fields = [*CURVE_SCHEMA, *(pa.field(name, pa.float64()) for name in names)]
    curve_rows = [{"run_id": run_id, **point} for point in curve]
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in fields} for r in curve_rows],
                                 schema=pa.schema(fields))
    atomic_write_table(table, Path(results_dir) / CURVES.folder / f"{run_id}.parquet")


def write_run(results_dir: Path, row: dict[str, Any], curve: list[dict[str, float]]) -> Path:
    run_id = row["run_id"]
    if curve:
        write_curve(results_dir, run_id, curve)
    path = Path(results_dir) / RUNS.folder / f"{run_id}.parquet"
    atomic_write_table(run_table(row), path)  # last: a row exists only when its curves do
    return path


def write_bench_row(results_dir: Path, row: dict[str, Any]) -> Path:
    path = Path(results_dir) / BENCH.folder / f"{row['bench_id']}.parquet"
    atomic_write_table(pa.Table.from_pylist([{f.name: row.get(f.name) for f in BENCH_SCHEMA}],
                                            schema=BENCH_SCHEMA), path)
    return path


# ------------------------------------------------------------------------------- reading


class SchemaMismatch(ValueError):
    """A results file whose columns are not those of its folder's format."""


def _compatible(found: pa.DataType, expected: pa.DataType) -> bool:
    if found == expected or pa.types.is_null(found):  # null: a column no row of the file filled
        return True
    # integers read as floats losslessly enough for metrics (e.g. a curve's step written as int)
    return pa.types.is_floating(expected) and (pa.types.is_integer(found) or pa.types.is_floating(found))


def conforming_schema(found: pa.Schema, fmt: FileFormat) -> pa.Schema:
    """The schema to read a file of ``fmt`` as: its columns with their declared types (undeclared ones
    float64). Raises SchemaMismatch naming the first column that does not fit."""
    missing = [name for name in fmt.required if name not in found.names]
    if missing:
        raise SchemaMismatch(f"not a {fmt.folder} file: no column {', '.join(missing)}")
    fields = []
    for field in found:
        index = fmt.schema.get_field_index(field.name)
        expected = fmt.schema.field(index).type if index >= 0 else pa.float64()
        if not _compatible(field.type, expected):
            raise SchemaMismatch(f"column {field.name!r} is {field.type}, expected {expected}")
        fields.append(pa.field(field.name, expected))
    return pa.schema(fields)


def read_folder(folder: Path, fmt: FileFormat, on_unreadable: Callable[[Path, Exception], None] | None = None,
                columns: list[str] | None = None) -> pa.Table | None:
    """All files of ``fmt`` in a folder (``columns`` only, if given) as one table. A file that cannot
    be read, or whose columns do not match ``fmt``, is skipped and reported to ``on_unreadable``
    (default: a Python warning). Hidden files (the temp files of writes in flight) are left out;
    stale ones are removed."""
    folder = Path(folder)
    if folder.is_dir():
        remove_stale_temps(folder)
    tables = []
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith("."):
            continue
        try:
            schema = conforming_schema(pq.read_schema(path), fmt)
            table = pq.read_table(path, columns=columns)
            empty = [name for name in fmt.required if name in table.column_names and table.column(name).null_count]
            if empty:
                raise SchemaMismatch(f"column {empty[0]!r} has nulls")
            table = _without_bad_json(table, fmt, path, on_unreadable)
            tables.append(table.cast(pa.schema([schema.field(name) for name in table.column_names])))
        except Exception as exc:
            if on_unreadable is None:
                warnings.warn(f"skipping unreadable results file {path}: {exc}", stacklevel=2)
            else:
                on_unreadable(path, exc)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


class BadRow(ValueError):
    """A row of a results file that the other rows of the file do not share the fault of."""


def _json_object(text: str | None) -> bool:
    if text is None:
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _without_bad_json(table: pa.Table, fmt: FileFormat, path: Path,
                      on_unreadable: Callable[[Path, Exception], None] | None) -> pa.Table:
    """``table`` without the rows whose JSON columns do not parse, each reported like an unreadable file."""
    for name in fmt.json_objects:
        if name not in table.column_names:
            continue
        good = [_json_object(text) for text in table.column(name).to_pylist()]
        for index in (i for i, ok in enumerate(good) if not ok):
            exc = BadRow(f"row {index}: column {name!r} is not a JSON object")
            if on_unreadable is None:
                warnings.warn(f"skipping unreadable results file {path}: {exc}", stacklevel=3)
            else:
                on_unreadable(path, exc)
        if not all(good):
            table = table.filter(pa.array(good))
    return table


def read_runs(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None,
              columns: list[str] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / RUNS.folder, RUNS, on_unreadable=on_unreadable, columns=columns)


def read_evals(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / EVALS.folder, EVALS, on_unreadable=on_unreadable)


def read_curves(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / CURVES.folder, CURVES, on_unreadable=on_unreadable)


def read_bench(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / BENCH.folder, BENCH, on_unreadable=on_unreadable)


def iter_rows(table: pa.Table | None) -> Iterable[dict[str, Any]]:
    return [] if table is None else table.to_pylist()


class Cells(NamedTuple):
    rows: list[dict[str, Any]]  # one row per (config_hash, seed)
    collapsed: int  # rows left out as duplicates of a cell


def one_per_cell(rows: Iterable[dict[str, Any]]) -> Cells:
    """One row per (config_hash, seed): the newest ok row, or the newest row when none is ok.

    Every reader that aggregates runs (leaderboard, report, plots) goes through this rule, so a cell
    that was run twice (a re-run, concurrent sweeps) is one sample, not two.
    """
    rows = list(rows)
    best: dict[tuple, dict[str, Any]] = {}

    def rank(row: dict[str, Any]) -> tuple:
        started = row.get("started_at")
        return (row.get("status") == Status.OK, started is not None, started or 0, row.get("run_id") or "")

    for row in rows:
        # a row without a config hash (written by hand) has no identity to share: it is its own cell
        key = (row.get("config_hash") or row.get("run_id"), row.get("seed"))
        if key not in best or rank(row) > rank(best[key]):
            best[key] = row
    return Cells(list(best.values()), len(rows) - len(best))


def read_cells(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None) -> Cells:
    """The run rows of a results folder, one per (config_hash, seed): see :func:`one_per_cell`."""
    return one_per_cell(iter_rows(read_runs(results_dir, on_unreadable=on_unreadable)))


def config_settings(row: dict[str, Any]) -> dict[str, Any]:
    """A run row's resolved config (its ``config_json``) as ``"section.key" -> value``, section one of
    model, task, train."""
    config = json.loads(row["config_json"]) if row.get("config_json") else {}
    return {f"{short}.{key}": value
            for section, short in (("task_config", "task"), ("model_config", "model"), ("train", "train"))
            for key, value in config.get(section, {}).items()}


def varying_keys(settings: list[dict[str, Any]]) -> set[str]:
    """The keys whose value is not the same in all ``settings`` (a key some lack counts as varying)."""
    return {k for k in set().union(*settings) if len({json.dumps(s.get(k)) for s in settings}) > 1}
