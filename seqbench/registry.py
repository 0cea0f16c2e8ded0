"""Model and task registries, filled by pluggy plugins through lazy specs.

A spec is plain data. Its ``build`` and ``config`` targets are ``"module:attr"`` strings that are
imported only when a run needs them, so ``seqbench list`` never imports torch or a model library.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import pluggy

from seqbench import hookspecs
from seqbench.errors import PluginError, UserError

PRESETS = ("smoke", "default", "cpu", "paper")
# Input views a task can offer and a model can accept.
VIEWS = frozenset({"tokens", "graph"})
DISABLE_AUTOLOAD_ENV = "SEQBENCH_DISABLE_PLUGIN_AUTOLOAD"


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")


def select_variants(specs: list[ModelSpec], variants: tuple[str, ...] | list[str] | None
                    ) -> list[tuple[ModelSpec, str]]:
    """(spec, variant) for each model: the asked-for variants it has, else its first. A variant no
    selected model has is a UserError."""
    if variants:
        unknown = [v for v in variants if not any(v in s.variants for s in specs)]
        if unknown:
            raise UserError(f"no selected model has variant(s) {', '.join(unknown)}; variants: "
                            + "; ".join(f"{s.name}: {', '.join(s.variants)}" for s in specs))
    return [(spec, variant) for spec in specs
            for variant in ([v for v in (variants or ()) if v in spec.variants] or [spec.variants[0]])]


def load_target(target: str | Any) -> Any:
    """Import ``"package.module:attr"``; non-strings are returned as they are."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name!r} has no attribute {attr!r} (target {target!r})") from None


def load_spec_target(spec: ModelSpec | TaskSpec, field_name: Literal["build", "config"]) -> Any:
    """A spec's ``build`` or ``config`` target, imported; a target that fails to import is a PluginError
    naming the spec and the target."""
    target = getattr(spec, field_name)
    try:
        return load_target(target)
    except Exception as exc:
        raise PluginError(f"{type(spec).__name__} {spec.name!r} {field_name} target {target!r} failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class ModelSpec:
    """A model plugin. ``build(config, info) -> nn.Module``; ``config`` is a dataclass."""

    name: str
    build: str
    config: str | type
    description: str
    variants: tuple[str, ...] = ("default",)  # the first is used when --variant is not given
    inputs: frozenset[str] = frozenset({"tokens"})  # views of a task this model can take
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # preset -> config overrides
    # --params N solves this config key (the model's width) for N parameters; a multiple is kept, given as
    # a number or as another config key (e.g. "n_heads": the width must split into whole heads)
    width_key: str = "d_model"
    width_multiple: int | str = 1
    # where no width alone comes within --params' tolerance, the solver may also move one of these integer
    # config keys within its inclusive range (tried in this order, values nearest the config's own first)
    second_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # "module:fn", fn(config, info) -> int: elements carried from one token to the next at info.seq_len
    # (recurrent state, conv window, KV cache); recorded as the row's state_size. None: not recorded.
    state_size: str | None = None

    kind = "model"


@dataclass(frozen=True)
class TaskSpec:
    """A task plugin. ``build(config, seed, batch_size)`` returns a :class:`seqbench.api.TaskData`.

    The one declaration of the task's name, version, metric and causal flag: the data cache's key and
    the ``TaskInfo`` models receive take them from here (``seqbench.train.data.build_task_data``, ``task_info``).
    """

    name: str
    build: str
    config: str | type
    description: str
    version: int  # bump whenever the generator's output changes (invalidates cached data)
    metric: str = "accuracy"  # the leaderboard's ranking metric: "accuracy" or "perplexity"
    causal: bool = False  # outputs at t may use only tokens <= t (models read it as TaskInfo.causal)
    views: frozenset[str] = frozenset({"tokens", "graph"})
    # preset -> {"task": {config overrides}, "train": {TrainConfig overrides}}
    presets: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    # the config key that sets the sequence length, for --eval-lengths; None: no other lengths
    length_key: str | None = None

    kind = "task"


S = TypeVar("S", ModelSpec, TaskSpec)


class Registry(Generic[S]):
    """Named specs of one kind; duplicate names are an error, unknown names get a suggestion."""

    def __init__(self, kind: str, spec_type: type[S]):
        self.kind = kind
        self._spec_type = spec_type
        self._specs: dict[str, S] = {}
        self.current_plugin: str | None = None  # who is registering, for error messages
        self._origin: dict[str, str | None] = {}

    def add(self, spec: S) -> None:
        if not isinstance(spec, self._spec_type):
            raise TypeError(f"{self.kind} registry takes {self._spec_type.__name__}, got {type(spec).__name__}")
        if spec.name in self._specs:
            raise PluginError(
                f"duplicate {self.kind} name {spec.name!r}: registered by plugin "
                f"{self._origin[spec.name]!r} and again by {self.current_plugin!r}. "
                "Rename one of them or uninstall the conflicting plugin."
            )
        self._specs[spec.name] = spec
        self._origin[spec.name] = self.current_plugin

    def get(self, name: str) -> S:
        try:
            return self._specs[name]
        except KeyError:
            raise UserError(unknown_name_message(self.kind, name, self.names())) from None

    def origin(self, name: str) -> str | None:
        return self._origin.get(name)

    def discard_plugin(self, plugin: str) -> None:
        """Forget every spec ``plugin`` registered (it turned out broken: all of it or none of it)."""
        for name in [n for n, origin in self._origin.items() if origin == plugin]:
            del self._specs[name], self._origin[name]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[S]:
        return iter(self._specs[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._specs)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Registered {kind}s: {', '.join(known) or '(none)'}."


@dataclass
class Registries:
    models: Registry[ModelSpec]
    tasks: Registry[TaskSpec]
    broken_plugins: dict[str, str]  # plugin name -> error, for plugins skipped as broken


def _load_entry_points(pm: pluggy.PluginManager, broken: dict[str, str]) -> None:
    """Like ``pm.load_setuptools_entrypoints`` but a plugin that raises on import is skipped."""
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a third party's bug must not take the harness down
            broken[ep.name] = f"{type(exc).__name__}: {exc}"


def build_registries(extra_plugins: tuple[object, ...] = (), autoload: bool | None = None) -> Registries:
    """Build the plugin manager, load plugins and collect their specs.

    Entry points of group ``seqbench`` are loaded unless ``SEQBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set
    (then only ``extra_plugins`` are used). Built-ins come through the same entry points.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    broken: dict[str, str] = {}
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        _load_entry_points(pm, broken)
    for plugin in extra_plugins:
        pm.register(plugin)
    _skip_unknown_hooks(pm, broken)

    models: Registry[ModelSpec] = Registry("model", ModelSpec)
    tasks: Registry[TaskSpec] = Registry("task", TaskSpec)
    for registry, hook_name in ((models, "seqbench_register_models"), (tasks, "seqbench_register_tasks")):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            registry.current_plugin = impl.plugin_name
            try:
                impl.function(registry=registry)
            except Exception as exc:  # e.g. a duplicate name: one plugin's mistake must not stop the others
                broken[impl.plugin_name] = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        registry.current_plugin = None
    for plugin in broken:
        models.discard_plugin(plugin)
        tasks.discard_plugin(plugin)
    return Registries(models, tasks, broken)


def _skip_unknown_hooks(pm: pluggy.PluginManager, broken: dict[str, str]) -> None:
    """A plugin implementing a hook seqbench does not declare (a misspelled name) is unregistered and
    reported, so that its registrations are not silently lost and the other plugins still load."""
    known = ", ".join(name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_"))
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            broken[pm.get_name(exc.plugin)] = f"implements an unknown hook ({exc}); known hooks: {known}"
            pm.unregister(exc.plugin)
