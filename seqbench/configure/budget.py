"""Matched budgets: solve a model's width for a parameter count (``--params N``), its state size, and
the memory a configuration would need (checked against the machine before anything is built).

Candidates are built on PyTorch's meta device: parameters get shapes but no memory and no
initialisation cost, so trying a few dozen widths takes well under a second and needs no data.
The parameter count grows with the width, so a binary search over the width's allowed multiples
finds the two widths around N; the closer one is taken. Within ``TOLERANCE`` it is a match. A width that
must split into heads moves in steps too coarse for small budgets, so where no width alone matches, the
solver also moves one of the spec's ``second_sizes`` (the MLP ratio, Mamba's expand, the head count),
nearest values first, and says what it moved; else the caller is told how far off it is (e.g. a budget
below the smallest width's embeddings).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqbench.configure.config import ConfigError
from seqbench.errors import UserError
from seqbench.registry import ModelSpec, load_spec_target, load_target

TOLERANCE = 0.05  # a solved width is a match within ±5% of the budget
MAX_WIDTH = 1 << 16  # no search goes past this width

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_param_count(text: str | int) -> int:
    """``"100k"`` -> 100000, ``"1.5M"`` -> 1500000, ``"250000"`` or ``"250_000"`` -> 250000."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise UserError(f"bad --params {text!r}: expected a parameter count such as 100k, 1.5M or 250000")
    value = round(float(match[1].replace("_", "")) * _SUFFIX[match[2].lower()])
    if value <= 0:
        raise UserError(f"bad --params {text!r}: the budget must be positive")
    return value


def count_params(model_spec: ModelSpec, config: Any, info: Any) -> int:
    """Parameters of the model ``config`` builds for ``info``, counted on the meta device (no memory)."""
    build = load_spec_target(model_spec, "build")
    try:
        with torch.device("meta"):
            module = build(config, info)
    except (NotImplementedError, RuntimeError):
        # a build that computes from data (GraphGPS's Laplacian eigenvectors) has no meta version: build it
        # for real, once per candidate; such models are small enough for that
        module = build(config, info)
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class Solved:
    config: Any  # the model config with its width (and any second size moved) set
    width: int
    n_params: int
    budget: int
    # second sizes the solver moved, as (config key, the config's value, the solved value)
    moved: tuple[tuple[str, int, int], ...] = ()

    @property
    def off(self) -> float:
        """Relative distance from the budget: (n_params - budget) / budget."""
        return (self.n_params - self.budget) / self.budget

    @property
    def matched(self) -> bool:
        return abs(self.off) <= TOLERANCE

    def warning(self, name: str) -> str | None:
        if self.matched:
            return None
        return (f"--params {self.budget:,}: {name} has no width within ±{TOLERANCE:.0%}; the closest, "
                f"{self.width}, gives {self.n_params:,} parameters ({self.off:+.1%})")

    def moved_note(self, name: str) -> str | None:
        """What the solver changed besides the width, said so a matched budget hides no change of shape."""
        if not self.moved:
            return None
        changes = ", ".join(f"model.{key} {old} -> {new}" for key, old, new in self.moved)
        return (f"--params {self.budget:,}: no width of {name} alone comes within ±{TOLERANCE:.0%}, so {changes} "
                f"too; width {self.width} gives {self.n_params:,} parameters ({self.off:+.1%})")

    def notes(self, name: str) -> list[str]:
        return [text for text in (self.moved_note(name), self.warning(name)) if text]


def width_step(model_spec: ModelSpec, config: Any) -> int:
    multiple = model_spec.width_multiple
    return int(getattr(config, multiple) if isinstance(multiple, str) else multiple)


def _solve_width_only(model_spec: ModelSpec, config: Any, info: Any, budget: int) -> Solved:
    """The width (a multiple of the spec's ``width_multiple``) whose parameter count is closest to ``budget``."""
    key = model_spec.width_key
    step = width_step(model_spec, config)
    cache: dict[int, tuple[Any, int] | None] = {}

    def at(k: int) -> tuple[Any, int] | None:
        """(config, params) at the first valid width m*k, m*(k+1), ... (e.g. RoPE needs even head widths,
        GraphGPS a width above its encoding's channels); checking validity costs no build, so look far."""
        if k not in cache:
            cache[k] = None
            for j in range(k, k + 64):
                try:
                    candidate = dataclasses.replace(config, **{key: step * j})
                except ConfigError:
                    continue
                cache[k] = (candidate, count_params(model_spec, candidate, info))
                break
        return cache[k]

    def params(k: int) -> float:
        found = at(k)
        return float("inf") if found is None else found[1]

    hi = 1
    while params(hi) < budget and step * hi * 2 <= MAX_WIDTH:
        hi *= 2
    lo = 0  # params(lo) < budget (width 0 stands for "below the smallest width")
    if params(hi) < budget:  # the largest width searched is still too small
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if params(mid) >= budget:
            hi = mid
        else:
            lo = mid
    candidates = [at(k) for k in (lo, hi) if k >= 1 and at(k) is not None]
    if not candidates:
        raise UserError(f"--params: no valid width found for model {model_spec.name!r}")
    best, n = min(candidates, key=lambda c: abs(c[1] - budget))
    return Solved(best, getattr(best, key), n, budget)


def solve_width(model_spec: ModelSpec, config: Any, info: Any, budget: int,
                fixed: frozenset[str] | set[str] = frozenset()) -> Solved:
    """The width whose parameter count is closest to ``budget``; where no width alone comes within
    ``TOLERANCE`` (widths that must split into heads move in coarse steps), also a second size of the
    spec's ``second_sizes`` (e.g. the MLP ratio), trying values nearest the config's own first so the shape
    changes as little as a match allows. Keys in ``fixed`` (set by the user) are never moved."""
    key = model_spec.width_key
    if key not in {f.name for f in dataclasses.fields(config)}:
        raise UserError(f"--params needs model {model_spec.name!r} to have a width key, but its config has no "
                        f"{key!r} (its ModelSpec's width_key)")
    best = _solve_width_only(model_spec, config, info, budget)
    if best.matched:
        return best
    for second, (low, high) in model_spec.second_sizes.items():
        own = getattr(config, second)
        if second in fixed or not low <= own <= high:
            continue  # the user's choice, or a value the range does not cover (mlp_ratio 0: no MLP to resize)
        for value in sorted(range(low, high + 1), key=lambda v: (abs(v - own), v)):
            if value == own:
                continue
            try:
                candidate = dataclasses.replace(config, **{second: value})
            except ConfigError:
                continue
            try:
                solved = _solve_width_only(model_spec, candidate, info, budget)
            except UserError:  # no valid width at this value
                continue
            solved = dataclasses.replace(solved, moved=((second, own, value),))
            if solved.matched:
                return solved
            if abs(solved.off) < abs(best.off):
                best = solved
    return best


def solve_for_budget(model_spec: ModelSpec, config: Any, info: Any, budget: int, fixed: set[str] | frozenset[str],
                     note: Callable[[str], None] | None = None) -> Any:
    """``config`` solved for ``budget`` parameters (see :func:`solve_width`); ``note`` hears what moved
    besides the width and any missed tolerance. Raises UserError when the user also set the width."""
    if model_spec.width_key in fixed:
        raise UserError(f"--params solves model.{model_spec.width_key} for {model_spec.name!r}; drop "
                        f"--set model.{model_spec.width_key} or --params")
    solved = solve_width(model_spec, config, info, budget, fixed=fixed)
    if note is not None:
        for text in solved.notes(model_spec.name):
            note(text)
    return solved.config


def state_size(model_spec: ModelSpec, config: Any, info: Any) -> int | None:
    """The spec's ``state_size(config, info)`` (elements carried from token to token), None without one."""
    if model_spec.state_size is None:
        return None
    return int(load_target(model_spec.state_size)(config, info))


# ---------------------------------------------------------------------------------- memory

# fp32 weights, their gradients and AdamW's two moments: 4 bytes each per parameter
TRAINING_BYTES_PER_PARAM = 16
# a split's tokens and targets, int64 each, per position (sequence targets are smaller: an upper bound)
DATA_BYTES_PER_POSITION = 16
GIB = 1024**3


def meta_param_count(model_spec: ModelSpec, config: Any, info: Any) -> int | None:
    """Parameters counted on the meta device, or None for a build that has no meta version (it computes
    from data): such a build is never refused for its size, since counting would allocate it."""
    try:
        with torch.device("meta"):
            module = load_spec_target(model_spec, "build")(config, info)
    except (NotImplementedError, RuntimeError):
        return None
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound of what training needs in memory: parameters (with gradients and optimizer state)
    and the generated splits. Activations come on top, so passing this check does not promise a fit."""

    n_params: int | None
    param_bytes: int
    data_bytes: int

    @property
    def total(self) -> int:
        return self.param_bytes + self.data_bytes


def estimate_memory(model_spec: ModelSpec, model_config: Any, task_config: Any, info: Any) -> MemoryEstimate:
    n = meta_param_count(model_spec, model_config, info)
    positions = sum(int(getattr(task_config, f"num_{split}", 0) or 0) for split in ("train", "val", "test"))
    data = positions * int(info.seq_len) * DATA_BYTES_PER_POSITION
    return MemoryEstimate(n, (n or 0) * TRAINING_BYTES_PER_PARAM, data)


def machine_memory_bytes() -> int | None:
    """This machine's memory (or its cgroup's limit, when lower), None where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def check_fits_memory(name: str, estimate: MemoryEstimate, available: int | None = None) -> None:
    """UserError when ``estimate`` alone exceeds the machine's memory, saying how much it would need."""
    available = machine_memory_bytes() if available is None else available
    if available is None or estimate.total <= available:
        return
    params = f"{estimate.n_params:,} parameters" if estimate.n_params is not None else "the parameters"
    raise UserError(f"{name} would need at least {estimate.total / GIB:,.1f} GiB ({params} x "
                    f"{TRAINING_BYTES_PER_PARAM} bytes for weights, gradients and AdamW's moments: "
                    f"{estimate.param_bytes / GIB:,.1f} GiB; the data: {estimate.data_bytes / GIB:,.1f} GiB), more "
                    f"than this machine's {available / GIB:,.1f} GiB of memory; make it smaller (model.d_model, "
                    "model.n_layers, --params, task.num_train, task.seq_len)")
