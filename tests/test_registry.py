from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from fake_plugins import NamedModels

from seqbench.errors import UserError
from seqbench.hookspecs import hookimpl
from seqbench.registry import build_registries


def test_builtins_come_through_entry_points(registries):
    assert {"transformer", "gru"} <= set(registries.models.names())
    assert "mqar" in registries.tasks.names()
    assert registries.models.origin("transformer") == "builtin_models"
    assert registries.tasks.origin("mqar") == "builtin_tasks"


def test_example_plugin_is_loaded_from_its_installed_entry_point(registries):
    # The example package under examples/ must be installed in the test environment (README).
    assert "example_lstm" in registries.models.names(), "pip install ./examples/seqbench-example-plugin"
    assert registries.models.origin("example_lstm") == "example"


def test_a_duplicate_name_breaks_the_second_plugin_only():
    first, second = NamedModels("dup", "mine"), NamedModels("dup", "theirs")
    registries = build_registries(extra_plugins=(first, second), autoload=False)
    assert registries.models.names() == ["dup", "mine"]
    assert registries.models.origin("dup") == registries.models.origin("mine")
    (error,) = registries.broken_plugins.values()
    assert "duplicate model name 'dup'" in error


def test_unknown_name_suggests_and_lists(registries):
    with pytest.raises(UserError) as info:
        registries.models.get("transfomer")
    message = str(info.value)
    assert "Did you mean 'transformer'?" in message
    assert "gru" in message and "transformer" in message


def test_plugin_that_raises_on_import_is_reported_and_skipped(monkeypatch):
    real = __import__("importlib.metadata", fromlist=["entry_points"]).entry_points

    def entry_points(group):
        broken = EntryPoint(name="broken_plugin", value="seqbench_no_such_module_xyz", group=group)
        return [broken, *real(group=group)]

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    registries = build_registries()
    assert "broken_plugin" in registries.broken_plugins
    assert "ModuleNotFoundError" in registries.broken_plugins["broken_plugin"]
    assert "transformer" in registries.models.names()  # the others still load


def test_plugin_whose_hook_raises_is_skipped():
    class Exploding:
        @hookimpl
        def seqbench_register_models(self, registry):
            raise RuntimeError("boom")

    registries = build_registries(extra_plugins=(Exploding(), NamedModels("fine")), autoload=False)
    assert any("boom" in error for error in registries.broken_plugins.values())
    assert registries.models.names() == ["fine"]


def test_misspelled_hook_is_reported_and_its_plugin_skipped():
    class Misspelled:
        @hookimpl
        def seqbench_register_model(self, registry):  # missing "s"
            pass

        @hookimpl
        def seqbench_register_tasks(self, registry):
            raise AssertionError("a plugin with an unknown hook must not register anything")

    registries = build_registries(extra_plugins=(Misspelled(), NamedModels("fine")), autoload=False)
    (error,) = registries.broken_plugins.values()
    assert "unknown hook 'seqbench_register_model'" in error and "seqbench_register_models" in error
    assert registries.models.names() == ["fine"]


def test_env_var_turns_off_autoloading(monkeypatch):
    monkeypatch.setenv("SEQBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    registries = build_registries(extra_plugins=(NamedModels("only"),))
    assert registries.models.names() == ["only"]
    assert len(registries.tasks) == 0


def test_a_task_is_named_versioned_and_flagged_once_in_its_spec(registries, smoke_overrides):
    import dataclasses

    from seqbench.api import TaskData
    from seqbench.configure.resolve import resolve_run_config
    from seqbench.registry import load_target
    from seqbench.train.data import build_task_data
    from seqbench.train.runner import build_data_and_model

    for spec in registries.tasks:
        data_class = load_target(spec.build)
        assert "name" not in vars(data_class) and "version" not in vars(data_class), spec.name  # declared once
        config = resolve_run_config(registries, "gru", spec.name, preset="smoke", overrides=smoke_overrides(spec.name))
        data, info, _ = build_data_and_model(registries, config)
        assert isinstance(data, TaskData)
        assert (info.name, info.causal, info.metric) == (spec.name, spec.causal, spec.metric)
        assert (data.name, data.version) == (spec.name, spec.version)
        bumped = build_task_data(dataclasses.replace(spec, version=spec.version + 1), config.task_config, seed=0,
                                 batch_size=4)
        assert bumped.cache_key("train") != data.cache_key("train")  # a new version never reads old data


class NotTaskData:
    def __init__(self, config, seed, batch_size):
        pass

    def info(self):
        return None


def test_a_data_module_that_breaks_the_contract_is_named(registries):
    from seqbench.registry import TaskSpec
    from seqbench.train.data import build_task_data

    spec = TaskSpec("broken_task", build=NotTaskData, config=object, description="", version=1)
    with pytest.raises(UserError, match="task 'broken_task'.*NotTaskData.*not a seqbench TaskData.*lacks setup"):
        build_task_data(spec, None, seed=0, batch_size=1)


def test_info_that_is_no_task_info_is_named():
    from seqbench.configure.resolve import task_info
    from seqbench.registry import TaskSpec
    from seqbench.train.data import TensorTaskData

    class DictInfo(TensorTaskData):
        def info(self):
            return {"vocab_size": 4}

    spec = TaskSpec("dict_info", build=DictInfo, config=object, description="", version=1)
    with pytest.raises(UserError, match=r"task 'dict_info': info\(\) returned a dict, not a seqbench.api.TaskInfo"):
        task_info(spec, DictInfo(None, seed=0, batch_size=1))
