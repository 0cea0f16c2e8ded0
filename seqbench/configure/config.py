"""Typed, frozen run configuration: presets, ``--set`` overrides and validation.

Model and task configs are frozen dataclasses owned by their plugins. They validate themselves in
``__post_init__`` with :func:`require`, so an impossible value fails before any work is done.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from seqbench.configure.options import check_seed
from seqbench.errors import UserError

# A bound on step counts: far above any preset (the paper's train for thousands of steps), and it refuses
# the absurd values that used to hang the run (--max-steps 99999999999999999999999, issue 22).
MAX_STEPS = 10**9


class ConfigError(UserError):
    """An invalid configuration value; the message names the field."""


def require(condition: bool, field_name: str, message: str) -> None:
    """Validation helper for config ``__post_init__``: raise ConfigError naming the field."""
    if not condition:
        raise ConfigError(f"invalid {field_name}: {message}")


# A setting added after runs were recorded declares ``field(default=..., metadata=ADDED_LATER)`` (plugins:
# seqbench.api.ADDED_LATER): at its default, which must be the old behaviour, it is left out of a run's
# identity, so runs recorded before it existed keep their config hash and a sweep still finds them done.
ADDED_LATER_KEY = "seqbench_added_later"
ADDED_LATER = types.MappingProxyType({ADDED_LATER_KEY: True})


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 32
    lr: float = 1e-3  # AdamW peak learning rate, after linear warm-up, cosine decay to 10%
    weight_decay: float = 0.1
    warmup_steps: int = 50
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    eval_every: int = 100  # steps between evaluations recorded in the curves
    eval_batches: int = 4  # validation batches per curve point (the final test uses all)
    # Early stopping (seqbench.train.stopping, Lightning's EarlyStopping); max_steps stays the cap.
    # Both read the curve's validation accuracy (validation loss for language modelling).
    stop_at: float | None = field(default=None, metadata=ADDED_LATER)  # stop once it reaches this (zoology: 0.99)
    patience: int | None = field(default=None, metadata=ADDED_LATER)  # evaluations without a min_delta gain
    min_delta: float = field(default=0.0, metadata=ADDED_LATER)  # the smallest gain that resets the patience count

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_every", "eval_batches"):
            require(getattr(self, name) > 0, f"train.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.patience is None or self.patience > 0, "train.patience",
                f"must be > 0 evaluations (none: no plateau stop), got {self.patience}")
        require(self.min_delta >= 0, "train.min_delta", f"must be >= 0, got {self.min_delta}")
        for name in ("max_steps", "eval_every", "warmup_steps"):
            require(getattr(self, name) <= MAX_STEPS, f"train.{name}", f"must be at most {MAX_STEPS:,}, got "
                    f"{getattr(self, name):,}")
        require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0 (0 disables it), got {self.weight_decay}")
        require(self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
        require(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result (and so its config hash)."""

    model: str
    variant: str
    task: str
    task_version: int
    preset: str
    seed: int
    model_config: Any
    task_config: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    precision: str = "32-true"

    def __post_init__(self) -> None:
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "task": self.task,
            "task_version": self.task_version,
            "preset": self.preset,
            "seed": self.seed,
            "precision": self.precision,
            "model_config": identity_dict(self.model_config),
            "task_config": identity_dict(self.task_config),
            "train": identity_dict(self.train),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def config_hash(self) -> str:
        """Identity of a run (seed included): a sweep skips a cell whose hash already has a row."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def identity_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as it enters a run's identity (``config_json``, the config hash): every field,
    except one declared ``metadata=ADDED_LATER`` while it holds its default."""
    values = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get(ADDED_LATER_KEY) and values[f.name] == f.default:
            del values[f.name]
    return values


# ---------------------------------------------------------------------------- overrides


def split_scope(item: str) -> tuple[str | None, str]:
    """``"transformer:model.n_layers=1"`` -> ``("transformer", "model.n_layers=1")``; an item without a
    scope -> ``(None, item)``. Only a colon before the ``=`` is a scope (values may hold colons)."""
    key = item.partition("=")[0]
    if ":" not in key:
        return None, item
    scope, _, rest = item.partition(":")
    return scope.strip(), rest


def overrides_for_model(items: list[str], model: str, models: list[str]) -> list[str]:
    """The ``--set`` items that apply to ``model``: every plain ``SECTION.KEY=VALUE`` item, and each
    ``MODEL:SECTION.KEY=VALUE`` item scoped to it, without its scope.

    A scope lets one sweep configure each model as its authors ran it (e.g. the ring's 1-layer
    Transformer beside a 3-layer GCN: ``transformer:model.n_layers=1``); items scoped to another of
    ``models`` are left out. A scope that names no model in ``models`` is a UserError.
    """
    kept = []
    for item in items:
        scope, rest = split_scope(item)
        if scope is None:
            kept.append(item)
            continue
        if scope not in models:
            close = difflib.get_close_matches(scope, models, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UserError(f"bad --set {item!r}: {scope!r} is not a model.{hint} Scoped settings read "
                            f"MODEL:SECTION.KEY=VALUE with MODEL one of {', '.join(models)}")
        if scope == model:
            kept.append(rest)
    return kept


def parse_overrides(items: list[str], flag: str = "--set") -> dict[str, dict[str, str]]:
    """``["model.d_model=64", "task.seq_len=128"]`` -> ``{"model": {...}, "task": {...}}``.

    ``flag`` is the option the items came from (``--set``, ``--grid``), named in the error messages.
    """
    out: dict[str, dict[str, str]] = {"model": {}, "task": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise UserError(f"bad {flag} {item!r}: expected SECTION.KEY=VALUE, e.g. task.seq_len=128")
        if section not in out:
            raise UserError(
                f"bad {flag} {item!r}: section {section!r} is not one of model, task, train "
                "(e.g. model.d_model=64, task.seq_len=128, train.lr=3e-4)"
            )
        if (section, name) == ("model", "variant"):
            # the variant is part of a run's identity beside model_config: two ways to set it could disagree
            raise UserError(f"bad {flag} {item!r}: choose the variant with --variant (sweep: --variants), "
                            "not with model.variant")
        out[section][name] = value.strip()
    return out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a CLI string (or preset value) into ``annotation``'s type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"invalid {where}: cannot parse {value!r}")
    if origin is Literal:
        choices = list(args)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"invalid {where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"invalid {where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"invalid {where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"invalid {where}: expected an integer, got {value!r}") from None
    if annotation is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid {where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):  # no setting means inf or nan, and either poisons training silently
            raise ConfigError(f"invalid {where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        return str(value)
    return value


def apply_overrides(cls: type, section: str, *layers: Mapping[str, Any]) -> Any:
    """Build ``cls`` from its defaults with each layer of overrides applied in order.

    Keys are checked against the dataclass fields (unknown keys get a suggestion) and values are
    coerced to the field's type; the dataclass's own ``__post_init__`` then validates the values.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    values: dict[str, Any] = {}
    for layer in layers:
        for key, raw in layer.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {section}.{close[0]}?" if close else ""
                raise ConfigError(
                    f"unknown key {section}.{key} for {cls.__name__}.{hint} Valid keys: {', '.join(names)}."
                )
            values[key] = _coerce(raw, hints[key], f"{section}.{key}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {section} config: {exc}") from None
