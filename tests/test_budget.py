"""--params: widths solved on the meta device to within ±5%, divisibility kept; state_size per model."""

from __future__ import annotations

import dataclasses

import pytest

from seqbench.configure.budget import TOLERANCE, count_params, parse_param_count, solve_width, state_size
from seqbench.configure.resolve import planned_task_info, resolve_run_config
from seqbench.errors import UserError
from seqbench.registry import load_target


@pytest.mark.parametrize("text,value", [("100k", 100_000), ("1.5M", 1_500_000), ("250000", 250_000),
                                        ("250_000", 250_000), ("2g", 2_000_000_000)])
def test_parse_param_count(text, value):
    assert parse_param_count(text) == value


@pytest.mark.parametrize("text", ["abc", "-5", "0", "1e5", "10kk"])
def test_bad_param_count_is_a_user_error(text):
    with pytest.raises(UserError, match="--params"):
        parse_param_count(text)


def _resolved(registries, model, variant=None, params=None, notes=None):
    config = resolve_run_config(registries, model, "mqar", variant=variant, preset="default", params=params,
                                note=None if notes is None else notes.append)
    return config, planned_task_info(registries.tasks.get("mqar"), config.task_config)


@pytest.mark.parametrize("model,variant", [("transformer", None), ("gru", None), ("mamba", None),
                                           ("tgn", "chunked"), ("gcn", None)])
def test_width_is_solved_within_tolerance_and_counts_match_a_real_build(registries, model, variant):
    config, info = _resolved(registries, model, variant, params=100_000)
    spec = registries.models.get(model)
    real = sum(p.numel() for p in load_target(spec.build)(config.model_config, info).parameters())
    assert abs(real - 100_000) <= TOLERANCE * 100_000
    assert count_params(spec, config.model_config, info) == real
    if model == "transformer":
        assert config.model_config.d_model % config.model_config.n_heads == 0


def test_closest_width_with_a_warning_when_none_is_within_tolerance(registries):
    notes = []
    config, info = _resolved(registries, "transformer", params=1_000, notes=notes)
    assert config.model_config.d_model == config.model_config.n_heads  # the smallest width that splits into heads
    assert len(notes) == 1 and "no width within ±5%" in notes[0] and "transformer" in notes[0]
    spec = registries.models.get("transformer")
    base = dataclasses.replace(config.model_config, d_model=4)
    solved = solve_width(spec, base, info, 1_000)
    bigger = count_params(spec, dataclasses.replace(base, d_model=8), info)
    assert abs(solved.n_params - 1_000) <= abs(bigger - 1_000) and not solved.matched


def test_params_and_an_explicit_width_conflict(cli, tmp_path):
    code, _, err = cli("run", "--model", "gru", "--task", "mqar", "--preset", "smoke", "--params", "10k",
                       "--set", "model.d_model=32", "--results", tmp_path)
    assert code == 2 and "--params solves model.d_model" in err and not (tmp_path / "runs").exists()


def test_state_sizes_follow_the_formulas(registries):
    sizes = {}
    for model, variant in (("gru", None), ("mamba", None), ("transformer", None), ("tgn", "parallel"),
                           ("tgn", "chunked"), ("gcn", None)):
        config, info = _resolved(registries, model, variant)
        sizes[(model, variant)] = (state_size(registries.models.get(model), config.model_config, info),
                                   config.model_config, info.seq_len)
    size, c, _ = sizes[("gru", None)]
    assert size == c.n_layers * c.d_model
    size, c, _ = sizes[("mamba", None)]
    assert size == c.n_layers * (c.expand * c.d_model * c.d_state + c.expand * c.d_model * (c.d_conv - 1))
    size, c, length = sizes[("transformer", None)]
    assert size == c.n_layers * 2 * length * c.d_model
    size, c, length = sizes[("tgn", "parallel")]
    assert size == c.n_layers * (c.d_model + 2 * length * c.d_model)
    size, c, length = sizes[("tgn", "chunked")]
    assert size == c.n_layers * (c.expand * c.d_model * (c.d_state + c.d_conv - 1) + 2 * length * c.d_model)
    assert sizes[("gcn", None)][0] is None  # no spec function: not recorded


def test_bench_solves_widths_too(registries):
    from seqbench.bench import BenchOptions, bench_info, resolve_models

    (model,) = resolve_models(registries, BenchOptions(models=("gru",), params=50_000), seq_len=128)
    n = count_params(registries.models.get("gru"), model.config, bench_info(128))
    assert abs(n - 50_000) <= TOLERANCE * 50_000
