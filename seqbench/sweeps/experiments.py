"""Experiments as files: ``seqbench sweep experiments/NAME.toml``.

An experiment file holds a sweep's settings under the names of ``seqbench sweep``'s flags, with ``_``
for ``-`` (``max_steps`` for ``--max-steps``); ``set`` and ``grid`` are tables. Flags given on the
command line override the file, so one file serves a smoke check and the real run::

    models = ["gru", "transformer"]
    tasks = ["mqar"]
    seeds = [0, 1, 2]
    preset = "default"
    launcher = "local"
    jobs = 2

    [set]
    "train.max_steps" = 400

    [grid]
    "task.seq_len" = [64, 128]

:class:`SweepArgs` is the one list of a sweep's settings and their defaults; the CLI and the file both
fill it. ``params`` and ``eval_lengths`` are ``--params`` and ``--eval-lengths`` (checked in
:func:`comparison_settings`); ``tune`` names the keys the grid tunes, for ``seqbench leaderboard --tune``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.configure.budget import parse_param_count
from seqbench.errors import UserError
from seqbench.sweeps.claims_lock import DEFAULT_TIMEOUT_S
from seqbench.sweeps.launchers import LaunchSettings
from seqbench.train.evals import check_lengths

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class SweepArgs:
    """Every setting of ``seqbench sweep``, with the command line's defaults."""

    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    variants: tuple[str, ...] | None = None  # None: each model's first
    grid: tuple[str, ...] = ()  # "section.key=v1,v2" axes
    sets: tuple[str, ...] = ()  # "section.key=value" for every cell (the file's [set] table)
    max_steps: int | None = None
    preset: str = "default"
    precision: str = "32-true"
    # comparisons (see the module docstring)
    params: str | None = None
    tune: tuple[str, ...] = ()
    eval_lengths: tuple[int, ...] = ()
    logger: tuple[str, ...] = ()  # --logger: Lightning loggers every cell writes (seqbench.train.tracking)
    checkpoint_every: int | None = None  # --checkpoint-every: a killed cell resumes from its checkpoint
    keep_checkpoints: int = 2
    results: str = "results"
    device: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    num_nodes: int = 1
    shard: str | None = None
    retry_failed: bool = False
    claim_timeout: float = DEFAULT_TIMEOUT_S  # seconds without a heartbeat before a claim is taken over
    launch: LaunchSettings = field(default_factory=LaunchSettings)

    def overrides(self) -> tuple[str, ...]:
        """``sets``, then ``max_steps`` as ``train.max_steps=N``."""
        return (*self.sets, *((f"train.max_steps={self.max_steps}",) if self.max_steps is not None else ()))


_LAUNCH_KEYS = {f.name for f in dataclasses.fields(LaunchSettings)}
_SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepArgs)} - {"launch", "sets"}
FILE_KEYS = sorted(_SWEEP_KEYS | _LAUNCH_KEYS | {"set", "description"})  # "description": for readers only

_NAME_LISTS = {"models", "tasks", "variants", "tune", "logger"}
_INT_LISTS = {"seeds", "eval_lengths"}


def _names(key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise UserError(f"{key} must be a list of names (or one comma-separated string), got {value!r}")
    names = tuple(v.strip() for v in items if v.strip())
    if not names:
        raise UserError(f"{key} is empty: list at least one")
    return names


def _ints(key: str, value: Any) -> tuple[int, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    try:
        if not isinstance(items, list) or not items or any(isinstance(v, (bool, float)) for v in items):
            raise ValueError
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a list of integers, got {value!r}") from None


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise UserError(f"expected a number, string or boolean, got {value!r}")


def _assignments(key: str, value: Any, axis: bool) -> tuple[str, ...]:
    """``[set]``/``[grid]`` tables (or lists of ``"k=v"`` strings, as on the command line)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if not isinstance(value, dict):
        raise UserError(f"{key} must be a table of SECTION.KEY = value, e.g. [{key}] \"train.lr\" = 3e-4")
    out = []
    for name, v in value.items():
        if isinstance(v, dict):
            raise UserError(f"{key}: quote dotted keys, e.g. \"{name}.{next(iter(v), 'key')}\" = ..., so TOML "
                            "does not read them as nested tables")
        if axis:
            values = v if isinstance(v, list) else [v]
            out.append(f"{name}={','.join(_toml_scalar(x) for x in values)}")
        else:
            out.append(f"{name}={_toml_scalar(v)}")
    return tuple(out)


def _field_kind(key: str) -> type:
    """The type a setting's flag parses to: its SweepArgs/LaunchSettings annotation, Optional removed."""
    hints = {**typing.get_type_hints(SweepArgs), **typing.get_type_hints(LaunchSettings)}
    kinds = [k for k in typing.get_args(hints[key]) if k is not type(None)] or [hints[key]]
    return kinds[0]


def _scalar(key: str, value: Any) -> Any:
    kind = _field_kind(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key} must be a finite number, got {value!r}")
    # devices = 2, slurm_time = 90, params = 100000 read naturally as numbers; their flags take text
    if kind is str and isinstance(value, int) and not isinstance(value, bool) and key in ("devices", "slurm_time",
                                                                                          "params"):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        wanted = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]
        raise UserError(f"{key} must be {wanted}, got {value!r}")
    return value


def convert(key: str, value: Any) -> Any:
    """One file (or command-line) value into its SweepArgs/LaunchSettings type; UserError names the key."""
    if key in _NAME_LISTS:
        return _names(key, value)
    if key in _INT_LISTS:
        return _ints(key, value)
    if key == "grid":
        return _assignments(key, value, axis=True)
    if key in ("set", "sets"):
        return _assignments("set", value, axis=False)
    return _scalar(key, value)


def load_experiment(path: Path) -> dict[str, Any]:
    """The settings an experiment file gives, by SweepArgs/LaunchSettings field name."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no experiment file {path}: pass a TOML file such as experiments/smoke.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read experiment file {path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in FILE_KEYS:
            close = difflib.get_close_matches(key, FILE_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown key {key!r} in {path}.{hint} Keys: {', '.join(FILE_KEYS)}")
        if key == "description":
            continue
        try:
            values["sets" if key == "set" else key] = convert(key, value)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    return values


def merge(*layers: dict[str, Any]) -> SweepArgs:
    """Defaults, then each layer in order (file, then command line), by field name."""
    sweep: dict[str, Any] = {}
    launch: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            (launch if key in _LAUNCH_KEYS else sweep)[key] = value
    return SweepArgs(**sweep, launch=LaunchSettings(**launch))


def comparison_settings(args: SweepArgs) -> tuple[int | None, tuple[int, ...]]:
    """``params`` as a parameter count (``--params``) and ``eval_lengths`` checked (``--eval-lengths``);
    ``tune`` names keys for the leaderboard, not for running (``seqbench leaderboard --tune``)."""
    params = None if args.params is None else parse_param_count(str(args.params))
    return params, check_lengths(args.eval_lengths)
