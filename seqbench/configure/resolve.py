"""Names, a preset and ``--set`` overrides resolved into a validated :class:`RunConfig`, before any work.

Each config is built in layers: the dataclass's defaults, the spec's preset settings, the variant, then
``--set``. A task's :class:`TaskInfo` (what a model is built for) comes from its data module's ``info()``
without generating any split, so ``--params`` can solve a model's width at the cost of a constructor call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import lightning as L

from seqbench.configure.budget import solve_for_budget
from seqbench.configure.config import RunConfig, TrainConfig, apply_overrides, overrides_for_model, parse_overrides
from seqbench.contracts import TaskData, TaskInfo
from seqbench.errors import PluginError, UserError
from seqbench.registry import ModelSpec, Registries, TaskSpec, check_preset, load_spec_target

TASK_DATA_METHODS = ("setup", "info", "train_dataloader", "val_dataloader", "test_dataloader", "data_fingerprint")


def resolve_task_config(task_spec: TaskSpec, preset: str, task_overrides: dict[str, str]) -> Any:
    """The task's config dataclass: defaults, then the preset's task settings, then ``--set task.*``."""
    return apply_overrides(load_spec_target(task_spec, "config"), "task",
                           task_spec.presets.get(preset, {}).get("task", {}), task_overrides)


def resolve_model_config(model_spec: ModelSpec, preset: str, variant: str, model_overrides: dict[str, str]) -> Any:
    """The model's config dataclass: defaults, the preset's model settings, the variant, ``--set model.*``."""
    model_cls = load_spec_target(model_spec, "config")
    variant_layer = {"variant": variant} if "variant" in {f.name for f in dataclasses.fields(model_cls)} else {}
    return apply_overrides(model_cls, "model", model_spec.presets.get(preset, {}), variant_layer, model_overrides)


def construct_task_data(spec: TaskSpec, config: Any, seed: int, batch_size: int) -> TaskData:
    """The task's data module from its ``build`` target (nothing generated yet), checked against
    :class:`TaskData` and as the LightningDataModule the Trainer takes. Raises PluginError naming the
    task when it does not conform."""
    data = load_spec_target(spec, "build")(config, seed=seed, batch_size=batch_size)
    missing = [name for name in TASK_DATA_METHODS if not callable(getattr(data, name, None))]
    if missing or not isinstance(data, L.LightningDataModule) or not isinstance(data, TaskData):
        lacks = f" (it lacks {', '.join(missing)})" if missing else " (it is no LightningDataModule)"
        raise PluginError(f"task {spec.name!r}: its build target {spec.build!r} returned a {type(data).__name__}, "
                          f"which is not a seqbench TaskData{lacks}; subclass seqbench.api.TensorTaskData "
                          "(see seqbench/api.py)")
    return data


def task_info(spec: TaskSpec, data: TaskData) -> TaskInfo:
    """``data.info()`` with the name, causal flag and metric the TaskSpec declares."""
    info = data.info()
    if not isinstance(info, TaskInfo):
        raise PluginError(f"task {spec.name!r}: info() returned a {type(info).__name__}, not a seqbench.api.TaskInfo")
    return dataclasses.replace(info, name=spec.name, causal=spec.causal, metric=spec.metric)


def planned_task_info(task_spec: TaskSpec, task_config: Any, seed: int = 0) -> TaskInfo:
    """The task's TaskInfo for ``task_config`` (what a model is built for), without generating its splits."""
    return task_info(task_spec, construct_task_data(task_spec, task_config, seed=seed, batch_size=1))


def resolve_run_config(registries: Registries, model: str, task: str, *, variant: str | None = None,
                       preset: str = "default", seed: int = 0, overrides: list[str] = (),
                       precision: str = "32-true", params: int | None = None,
                       note: Callable[[str], None] | None = None) -> RunConfig:
    """Names, preset and ``--set`` overrides -> a validated RunConfig. Raises UserError.

    ``params``: solve the model's width for this many parameters (seqbench.configure.budget); ``note``
    is told when no width comes within the tolerance."""
    model_spec = registries.models.get(model)
    task_spec = registries.tasks.get(task)
    check_preset(preset)
    if variant is None:
        variant = model_spec.variants[0]
    elif variant not in model_spec.variants:
        raise UserError(f"model {model!r} has no variant {variant!r}: choose one of {', '.join(model_spec.variants)}")
    if not (model_spec.inputs & task_spec.views):
        raise UserError(
            f"model {model!r} takes {', '.join(sorted(model_spec.inputs))} input, but task {task!r} offers "
            f"{', '.join(sorted(task_spec.views))}; pick a model and task with an input view in common"
        )
    sets = parse_overrides(overrides_for_model(list(overrides), model, registries.models.names()))
    model_config = resolve_model_config(model_spec, preset, variant, sets["model"])
    task_config = resolve_task_config(task_spec, preset, sets["task"])
    if params is not None:
        model_config = solve_for_budget(model_spec, model_config, planned_task_info(task_spec, task_config, seed),
                                        params, fixed=set(sets["model"]), note=note)
    return RunConfig(
        model=model, variant=variant, task=task, task_version=task_spec.version, preset=preset, seed=seed,
        model_config=model_config, task_config=task_config,
        train=apply_overrides(TrainConfig, "train", task_spec.presets.get(preset, {}).get("train", {}), sets["train"]),
        precision=precision,
    )
