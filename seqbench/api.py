"""The one face plugin authors import: everything a model or task plugin needs, and nothing else.

A model plugin builds a plain ``nn.Module`` from its config dataclass and a :class:`TaskInfo`; a task
plugin returns a :class:`TaskData` (usually a :class:`TensorTaskData` subclass); both register a
:class:`ModelSpec` or :class:`TaskSpec` from a ``@hookimpl`` (also importable from
:mod:`seqbench.hookspecs`, as pytest and pluggy do). Configs validate themselves with :func:`require`;
a user's mistake is a :class:`UserError`, a plugin's a :class:`PluginError`. Optional fast kernels go
through :func:`resolve_kernel` and :func:`cpu_kernel_allowed`. The contracts themselves are declared in
:mod:`seqbench.contracts`; the names below are re-exported from where they live, so a name a plugin
imports here is part of the contract and may be relied on.

The task-data names (``TensorTaskData`` and its helpers) live with the training code and import
torch and Lightning, so they are loaded on first use (see ``_LAZY`` below and the import rule in
``seqbench/__init__.py``): a plugin's registration module imports this face, and ``seqbench list``
must not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seqbench.configure.config import ADDED_LATER, ConfigError, require
from seqbench.contracts import (
    IGNORE_INDEX,
    ForcibleGates,
    GateModes,
    GateSchedule,
    GateThreshold,
    KernelReport,
    LayerProbes,
    LengthLimited,
    ModelBuilder,
    ModelOutput,
    PositionReadout,
    SequenceModel,
    TaskData,
    TaskInfo,
)
from seqbench.errors import PluginError, UserError
from seqbench.hookspecs import hookimpl
from seqbench.registry import ModelSpec, TaskSpec
from seqbench.train.kernels import cpu_kernel_allowed
from seqbench.train.kernels import resolve as resolve_kernel

if TYPE_CHECKING:
    from seqbench.train.data import (
        MAX_FRUITLESS_BATCHES,
        TensorTaskData,
        earlier_splits,
        row_digests,
        take_new_rows,
    )

# names of seqbench.train.data, imported when one is first read (PEP 562)
_LAZY = ("TensorTaskData", "MAX_FRUITLESS_BATCHES", "earlier_splits", "row_digests", "take_new_rows")

__all__ = [
    "ADDED_LATER", "IGNORE_INDEX", "MAX_FRUITLESS_BATCHES", "ConfigError", "ForcibleGates", "GateModes",
    "GateSchedule", "GateThreshold", "KernelReport", "LayerProbes", "LengthLimited", "ModelBuilder", "ModelOutput",
    "ModelSpec", "PluginError", "PositionReadout", "SequenceModel", "TaskData", "TaskInfo", "TaskSpec",
    "TensorTaskData", "UserError",
    "cpu_kernel_allowed", "earlier_splits", "hookimpl", "require", "resolve_kernel", "row_digests", "take_new_rows",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from seqbench.train import data

        value = getattr(data, name)
        globals()[name] = value  # read once; later reads are plain attribute lookups
        return value
    raise AttributeError(f"module 'seqbench.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
