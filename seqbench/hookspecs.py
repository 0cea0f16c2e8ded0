"""pluggy hook specifications of the "seqbench" project.

Built-in models and tasks are plugins exactly like third-party ones: a package declares
``[project.entry-points.seqbench] name = "pkg.module"`` and implements these hooks in that module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from seqbench.registry import Registry

PROJECT = "seqbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def seqbench_register_models(registry: Registry) -> None:
    """Add :class:`~seqbench.registry.ModelSpec` objects with ``registry.add(spec)``.

    Called once, when the plugin manager is built. Must not import heavy modules (torch, models):
    a spec's ``build`` is a lazy ``"module:attr"`` string.
    """


@hookspec
def seqbench_register_tasks(registry: Registry) -> None:
    """Add :class:`~seqbench.registry.TaskSpec` objects with ``registry.add(spec)``.

    Called once, when the plugin manager is built. Same laziness rule as for models.
    """
