"""A recorded configuration back into a RunConfig: ``seqbench run --from RUN_ID`` and sweep workers.

A row's ``config_json`` is the whole resolved config (``RunConfig.to_json``). Rebuilding it goes through
the same typed ``apply_overrides`` as ``--set``, so a key the plugin no longer has, or a value that no
longer validates, is a clear error; and the rebuilt config must hash to the recorded ``config_hash``,
so a re-run is the same cell, not a look-alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from seqbench.configure.config import RunConfig, TrainConfig, apply_overrides
from seqbench.errors import UserError
from seqbench.registry import Registries, check_preset, load_spec_target

_REQUIRED = ("model", "variant", "task", "task_version", "preset", "seed", "precision", "model_config",
             "task_config", "train")
_TYPES = {"model": str, "variant": str, "task": str, "preset": str, "precision": str, "seed": int,
          "task_version": int, "model_config": dict, "task_config": dict, "train": dict}
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")  # those `run --precision` offers


def _check_fields(data: dict[str, Any], where: str) -> None:
    """The top level of a config_json: each field of its JSON type (the sections go through the typed
    apply_overrides, like ``--set``)."""
    for key, kind in _TYPES.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            wanted = {str: "a string", int: "an integer", dict: "an object"}[kind]
            raise UserError(f"{where}: {key} must be {wanted}, got {value!r}")
    if data["precision"] not in PRECISIONS:
        raise UserError(f"{where}: unknown precision {data['precision']!r}: choose one of {', '.join(PRECISIONS)}")


def config_from_dict(registries: Registries, data: dict[str, Any], where: str = "the config") -> RunConfig:
    missing = [k for k in _REQUIRED if k not in data] if isinstance(data, dict) else list(_REQUIRED)
    if missing:
        raise UserError(f"{where} is not a seqbench config_json: it lacks {', '.join(missing)}")
    _check_fields(data, where)
    model_spec = registries.models.get(data["model"])
    task_spec = registries.tasks.get(data["task"])
    check_preset(data["preset"])
    if data["variant"] not in model_spec.variants:
        raise UserError(f"{where}: model {data['model']!r} has no variant {data['variant']!r}: choose one of "
                        f"{', '.join(model_spec.variants)}")
    recorded_variant = data["model_config"].get("variant", data["variant"])
    if recorded_variant != data["variant"]:
        raise UserError(f"{where}: variant {data['variant']!r} but model_config.variant {recorded_variant!r}; "
                        "they must agree")
    if data["task_version"] != task_spec.version:
        raise UserError(f"{where} was recorded with task {data['task']!r} version {data['task_version']}, but the "
                        f"installed task is version {task_spec.version}: its data differ, so it cannot be re-run "
                        "exactly")
    try:
        return RunConfig(
            model=data["model"], variant=data["variant"], task=data["task"], task_version=data["task_version"],
            preset=data["preset"], seed=data["seed"], precision=data["precision"],
            model_config=apply_overrides(load_spec_target(model_spec, "config"), "model", data["model_config"]),
            task_config=apply_overrides(load_spec_target(task_spec, "config"), "task", data["task_config"]),
            train=apply_overrides(TrainConfig, "train", data["train"]),
        )
    except UserError as exc:
        raise UserError(f"{where} no longer fits the installed plugins: {exc}") from None


def config_from_json(registries: Registries, text: str, expected_hash: str | None = None,
                     where: str = "the config") -> RunConfig:
    """Rebuild a ``config_json``; with ``expected_hash``, check the rebuilt config is that cell."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not valid JSON: {exc}") from None
    config = config_from_dict(registries, data, where)
    if expected_hash is not None and config.config_hash() != expected_hash:
        raise UserError(f"{where} rebuilds to config {config.config_hash()}, not the recorded {expected_hash}: "
                        "a plugin's config changed since (new or renamed keys); it cannot be re-run exactly")
    return config


def recorded_row(results_dir: Path, run: str) -> dict[str, Any]:
    """The row of run id ``run`` in ``results_dir``, or of the run file at path ``run``."""
    path = Path(run)
    if not (path.suffix == ".parquet" and path.is_file()):
        path = Path(results_dir) / "runs" / f"{run}.parquet"
    if not path.is_file():
        raise UserError(f"no run {run!r} in {results_dir}/runs: pass a run id from that folder (see "
                        "`seqbench leaderboard` or the file names), --results DIR, or a run file's path")
    try:
        rows = pq.read_table(path, columns=["run_id", "config_hash", "config_json"]).to_pylist()
    except Exception as exc:
        raise UserError(f"cannot read run file {path}: {type(exc).__name__}: {exc}") from None
    if len(rows) != 1 or not rows[0]["config_json"]:
        raise UserError(f"{path} holds no recorded config (one row with config_json expected)")
    return rows[0]


def config_from_argument(registries: Registries, text: str) -> RunConfig:
    """``--from-config``: a JSON object, or a file holding one (a row's ``config_json``)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--from-config {text!r} is neither a JSON object nor a file; pass a row's "
                            "config_json or a file holding it")
        try:
            stripped = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --from-config file {path}: {exc}") from None
    return config_from_json(registries, stripped, where=f"--from-config {text[:60]!r}")
