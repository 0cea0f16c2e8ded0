"""Matched budgets: solve a model's width for a parameter count (``--params N``), its state size, and
the memory a configuration would need (checked against the machine before anything is built).

Candidates are built on PyTorch's meta device: parameters get shapes but no memory and no
initialisation cost, so trying a few dozen widths takes well under a second and needs no data.
The parameter count grows with the width, so a binary search over the width's allowed multiples
finds the two widths around N; the closer one is taken. Within ``TOLERANCE`` it is a match, else the
caller is told how far off it is (e.g. a budget below the smallest width's embeddings).
"""

from __future__ import annotations

import dataclasses
import os
import re
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
    config: Any  # the model config with its width set
    width: int
    n_params: int
    budget: int

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


def width_step(model_spec: ModelSpec, config: Any) -> int:
    multiple = model_spec.width_multiple
    return int(getattr(config, multiple) if isinstance(multiple, str) else multiple)


def solve_width(model_spec: ModelSpec, config: Any, info: Any, budget: int) -> Solved:
    """The width (a multiple of the spec's ``width_multiple``) whose parameter count is closest to ``budget``."""
    key = model_spec.width_key
    if key not in {f.name for f in dataclasses.fields(config)}:
        raise UserError(f"--params needs model {model_spec.name!r} to have a width key, but its config has no "
                        f"{key!r} (its ModelSpec's width_key)")
    step = width_step(model_spec, config)
    cache: dict[int, tuple[Any, int] | None] = {}

    def at(k: int) -> tuple[Any, int] | None:
        """(config, params) at the first valid width m*k, m*(k+1), ... (e.g. RoPE needs even head widths)."""
        if k not in cache:
            cache[k] = None
            for j in range(k, k + 4):
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
