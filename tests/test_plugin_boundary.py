"""Plugins at the boundary: a model's first outputs are checked against its task, a build target that
does not import is named, and a broken plugin is reported by name while everything else keeps working."""

from __future__ import annotations

import json

import pytest
from fake_plugins import ContractBreakers, FakeModels, NamedModels

from seqbench import registry as registry_module
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import PluginError
from seqbench.hookspecs import hookimpl
from seqbench.registry import build_registries
from seqbench.results import Status, read_runs
from seqbench.sweeps.sweep import SweepSpec, expand, run_sweep
from seqbench.train.runner import run

SMALL = ["train.batch_size=8", "train.max_steps=2", "train.eval_every=2"]  # B = 8 != T = 32 (mqar smoke)


@pytest.fixture(scope="module")
def fakes():
    return build_registries(extra_plugins=(FakeModels(), ContractBreakers()))


@pytest.fixture
def fake_cli(cli, monkeypatch, fakes):
    """The CLI with the test plugins registered besides the installed ones."""
    monkeypatch.setattr(registry_module, "build_registries", lambda: fakes)
    return cli


def test_transposed_logits_stop_the_run_with_one_line_naming_the_model(fake_cli, tmp_path):
    code, out, err = fake_cli("run", "--model", "fake_transposed", "--task", "mqar", "--preset", "smoke",
                              "--results", tmp_path, "--no-progress", *[a for s in SMALL for a in ("--set", s)])
    assert code == 2 and "Traceback" not in err
    assert "model 'fake_transposed' returned logits of shape (32, 8, 64)" in err
    assert "expected (8, 32, 64) = (batch, seq_len, num_classes)" in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_sequence_targets_need_batch_by_classes(fakes, tmp_path):
    config = resolve_run_config(fakes, "fake_plain", "listops", preset="smoke", overrides=SMALL)
    with pytest.raises(PluginError, match=r"'fake_plain' returned logits of shape \(8, 32, 10\) on its first "
                                          r"training batch of task 'listops'; expected \(8, 10\)"):
        run(fakes, config, RunOptions(results_dir=tmp_path, progress=False))


def test_non_finite_logits_are_refused_on_the_first_batch(fakes, tmp_path):
    config = resolve_run_config(fakes, "fake_nonfinite", "mqar", preset="smoke", overrides=SMALL)
    with pytest.raises(PluginError, match="'fake_nonfinite' returned non-finite logits"):
        run(fakes, config, RunOptions(results_dir=tmp_path, progress=False))


def test_the_first_evaluation_is_checked_too(fakes, tmp_path):
    from seqbench.train.lit import SeqbenchModule
    from seqbench.train.runner import build_data_and_model

    config = resolve_run_config(fakes, "fake_transposed", "mqar", preset="smoke", overrides=SMALL)
    data, info, module = build_data_and_model(fakes, config)
    lit = SeqbenchModule(module, info, config.train, model_name="fake_transposed")
    tokens, targets = next(iter(data.val_dataloader()))
    with pytest.raises(PluginError, match="first validation batch"):
        lit.validation_step((tokens, targets), 0)


def test_in_a_sweep_a_broken_model_is_a_failed_row_with_that_line(fakes, tmp_path):
    cells = expand(fakes, SweepSpec(models=("fake_transposed", "fake_unimportable", "fake_plain"), tasks=("mqar",),
                                    preset="smoke", sets=tuple(SMALL)))
    rows = run_sweep(fakes, cells, RunOptions(results_dir=tmp_path, progress=False))
    by_model = {r["model"]: r for r in read_runs(tmp_path).to_pylist()}
    assert [r["status"] for r in rows] == [Status.FAILED, Status.FAILED, Status.OK]
    assert by_model["fake_transposed"]["error"].startswith("model 'fake_transposed' returned logits of shape")
    assert "\n" not in by_model["fake_transposed"]["error"]
    assert by_model["fake_unimportable"]["error"] == (
        "ModelSpec 'fake_unimportable' build target 'seqbench_no_such_module_xyz.models:build' failed to import: "
        "ModuleNotFoundError: No module named 'seqbench_no_such_module_xyz'")


def test_a_build_target_that_fails_to_import_is_named(fake_cli, tmp_path):
    code, out, err = fake_cli("run", "--model", "fake_unimportable", "--task", "mqar", "--preset", "smoke",
                              "--results", tmp_path, "--no-progress")
    assert code == 2 and "Traceback" not in err
    assert "ModelSpec 'fake_unimportable' build target 'seqbench_no_such_module_xyz.models:build' failed to " \
           "import" in " ".join(err.split())


class _Misspelled:
    @hookimpl
    def seqbench_register_model(self, registry):  # missing "s"
        pass


def test_list_still_works_and_shows_each_broken_plugin(cli, monkeypatch):
    real = registry_module.build_registries
    first, again = NamedModels("dup_model", "own_model"), NamedModels("dup_model", "other_model")
    misspelled = _Misspelled()
    monkeypatch.setattr(registry_module, "build_registries",
                        lambda: real(extra_plugins=(first, again, misspelled)))
    code, out, err = cli("list", "--json")
    assert code == 0
    listed = json.loads(out)
    names = {m["name"] for m in listed["models"]}
    assert {"transformer", "dup_model", "own_model"} <= names and "other_model" not in names  # all or nothing
    errors = " ".join(listed["broken_plugins"].values())
    assert "duplicate model name 'dup_model'" in errors and "unknown hook 'seqbench_register_model'" in errors
    code, out, err = cli("list")
    assert code == 0 and "Broken plugins" in out and "seqbench_register_model" in " ".join(out.split())
    code, out, err = cli("describe", "--task", "mqar", "--preset", "smoke")  # other commands go on, with a warning
    assert code == 0 and "duplicate model name 'dup_model'" in " ".join(err.split())
