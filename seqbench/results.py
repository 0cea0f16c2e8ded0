"""Parquet results: one file per run under ``<results>/runs/``, curves under ``<results>/curves/``.

Every file is written atomically (a temp file in the same folder, then ``os.replace``), so a killed
process never leaves a half-written row for readers. Readers take the folder as one dataset.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# The columns every run row has, in order. Models and tasks may add float columns of their own
# (e.g. accuracy_hard, gate_mean); readers see them as nulls for runs that lack them.
RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("model", pa.string()),
    ("variant", pa.string()),
    ("task", pa.string()),
    ("task_version", pa.int64()),
    ("preset", pa.string()),
    ("seed", pa.int64()),
    ("status", pa.string()),  # ok | diverged | failed
    ("error", pa.string()),  # why a run failed, else null
    ("accuracy", pa.float64()),  # test accuracy over scored positions
    ("loss", pa.float64()),  # test cross-entropy per scored position
    ("perplexity", pa.float64()),  # exp(loss), for language-modelling tasks, else null
    ("gate_rate", pa.float64()),  # fraction of test gates above threshold, null for ungated models
    ("tokens_per_sec", pa.float64()),  # training throughput
    ("n_params", pa.int64()),
    ("steps", pa.int64()),
    ("wall_time_s", pa.float64()),
    ("device", pa.string()),
    ("threads", pa.int64()),  # torch intra-op threads the run used (seqbench.threads)
    ("kernels", pa.string()),
    ("seqbench_version", pa.string()),
    ("torch_version", pa.string()),
    ("git_sha", pa.string()),
    ("config_hash", pa.string()),
    ("config_json", pa.string()),
    ("data_fingerprint", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
])


def atomic_write_table(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_table(row: dict[str, Any]) -> pa.Table:
    """One-row table: the fixed schema first, then any extra numeric columns in sorted order."""
    fields = list(RUN_SCHEMA)
    for name in sorted(set(row) - set(RUN_SCHEMA.names)):
        fields.append(pa.field(name, pa.float64()))
    schema = pa.schema(fields)
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}], schema=schema)


def write_curve(results_dir: Path, run_id: str, curve: list[dict[str, float]]) -> None:
    """(Re)write a run's curve file; also during the run, after each evaluation (seqbench.tracking)."""
    # points may carry different keys (evaluation vs per-step training points): take the union
    names = list(dict.fromkeys(key for point in curve for key in point))
    curve_rows = [{"run_id": run_id, **{name: point.get(name) for name in names}} for point in curve]
    atomic_write_table(pa.Table.from_pylist(curve_rows), Path(results_dir) / "curves" / f"{run_id}.parquet")


def write_run(results_dir: Path, row: dict[str, Any], curve: list[dict[str, float]]) -> Path:
    run_id = row["run_id"]
    if curve:
        write_curve(results_dir, run_id, curve)
    path = results_dir / "runs" / f"{run_id}.parquet"
    atomic_write_table(run_table(row), path)  # last: a row exists only when its curves do
    return path


def read_folder(folder: Path, on_unreadable: Callable[[Path, Exception], None] | None = None,
                columns: list[str] | None = None) -> pa.Table | None:
    """All result files of a folder (``columns`` only, if given) as one table; unreadable files are
    skipped and reported to ``on_unreadable`` (default: a Python warning). Hidden files (the temp
    files of writes in flight) are left out."""
    tables = []
    for path in sorted(Path(folder).glob("*.parquet")):
        if path.name.startswith("."):
            continue
        try:
            tables.append(pq.read_table(path, columns=columns))
        except Exception as exc:
            if on_unreadable is None:
                warnings.warn(f"skipping unreadable results file {path}: {exc}", stacklevel=2)
            else:
                on_unreadable(path, exc)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def read_runs(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None,
              columns: list[str] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / "runs", on_unreadable=on_unreadable, columns=columns)


def read_curves(results_dir: Path, on_unreadable: Callable[[Path, Exception], None] | None = None) -> pa.Table | None:
    return read_folder(Path(results_dir) / "curves", on_unreadable=on_unreadable)


def iter_rows(table: pa.Table | None) -> Iterable[dict[str, Any]]:
    return [] if table is None else table.to_pylist()


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
