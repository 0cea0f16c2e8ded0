"""The one place the harness asks a model what it can do, through the Protocols of :mod:`seqbench.contracts`.

Each function takes the model (or any module) and returns the capability, or ``None`` / a default when
the model does not offer it. A member set to ``None`` (e.g. a subclass opting out of its parent's
``force_gate_rate``) counts as absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqbench.contracts import (
    ForcibleGates,
    GateModes,
    GateSchedule,
    GateThreshold,
    KernelReport,
    LayerProbes,
    LengthLimited,
    PositionReadout,
)

if TYPE_CHECKING:
    from torch import nn

DEFAULT_GATE_THRESHOLD = 0.5


def gate_schedule(module: nn.Module) -> GateSchedule | None:
    return module if isinstance(module, GateSchedule) else None


def gate_threshold(module: nn.Module) -> float:
    return float(module.gate_threshold) if isinstance(module, GateThreshold) else DEFAULT_GATE_THRESHOLD


def gate_modes(module: nn.Module) -> GateModes | None:
    return module if isinstance(module, GateModes) else None


def forcible_gates(module: nn.Module) -> list[ForcibleGates]:
    """Every submodule (the module included) whose gate rate can be fixed."""
    return [m for m in module.modules() if isinstance(m, ForcibleGates)]


def layer_probes(module: nn.Module) -> LayerProbes | None:
    return module if isinstance(module, LayerProbes) else None


def position_readout(module: nn.Module) -> PositionReadout | None:
    return module if isinstance(module, PositionReadout) else None


def max_seq_len(module: nn.Module) -> int | None:
    """The longest sequence the model can take (``LengthLimited``); None for any length."""
    return module.max_seq_len() if isinstance(module, LengthLimited) else None


def kernels_used(module: nn.Module) -> str:
    """The implementation paths the module's submodules report having run, joined; plain torch when none."""
    paths = sorted({str(m.kernel_path) for m in module.modules() if isinstance(m, KernelReport) and m.kernel_path})
    return ",".join(paths) if paths else "torch"
