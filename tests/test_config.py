from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from seqbench.configure.config import ConfigError, TrainConfig, apply_overrides, parse_overrides
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import UserError
from seqbench_tasks.mqar import MQARConfig


def test_presets_and_overrides_resolve_to_a_frozen_typed_config(registries):
    config = resolve_run_config(registries, "transformer", "mqar", preset="smoke", seed=3,
                                overrides=["model.d_model=32", "task.num_kv_pairs=2", "train.lr=3e-4"])
    assert config.model_config.d_model == 32 and isinstance(config.model_config.d_model, int)
    assert config.task_config.num_kv_pairs == 2
    assert config.task_config.seq_len == 32  # from the smoke preset
    assert config.train.lr == pytest.approx(3e-4)
    assert config.seed == 3 and config.variant == "default"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 4  # type: ignore[misc]


def test_config_hash_depends_on_seed_and_settings(registries):
    a = resolve_run_config(registries, "gru", "mqar", preset="smoke", seed=0)
    assert a.config_hash() == resolve_run_config(registries, "gru", "mqar", preset="smoke", seed=0).config_hash()
    assert a.config_hash() != resolve_run_config(registries, "gru", "mqar", preset="smoke", seed=1).config_hash()
    b = resolve_run_config(registries, "gru", "mqar", preset="smoke", seed=0, overrides=["train.lr=0.01"])
    assert a.config_hash() != b.config_hash()


@pytest.mark.parametrize("item, message", [
    ("task.num_kv_pars=4", "Did you mean task.num_kv_pairs?"),
    ("task.seq_len=abc", "invalid task.seq_len: expected an integer"),
    ("task.seq_len=-5", "invalid task.seq_len: must be > 0"),
    ("task.num_kv_pairs=40", "invalid task.num_kv_pairs"),
    ("task.vocab_size=6", "invalid task.vocab_size"),
    ("model.d_model=0", "invalid model.d_model"),
    ("model.n_heads=3", "invalid model.n_heads"),
    ("train.max_steps=0", "invalid train.max_steps"),
    ("optim.lr=1", "section 'optim' is not one of model, task, train"),
    ("task.seq_len", "expected SECTION.KEY=VALUE"),
])
def test_bad_values_name_the_field(registries, item, message):
    with pytest.raises(UserError, match=message.replace("?", r"\?").replace(".", r"\.")):
        resolve_run_config(registries, "transformer", "mqar", preset="default", overrides=[item])


@dataclass(frozen=True)
class _Typed:
    flag: bool = False
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    maybe: int | None = None


def test_coercion_of_bool_float_and_literal():
    C = _Typed
    c = apply_overrides(C, "model", {"flag": "true", "rate": "2", "mode": "b", "maybe": "none"})
    assert (c.flag, c.rate, c.mode, c.maybe) == (True, 2.0, "b", None)
    with pytest.raises(ConfigError, match="not one of a, b"):
        apply_overrides(C, "model", {"mode": "c"})
    with pytest.raises(ConfigError, match="expected true or false"):
        apply_overrides(C, "model", {"flag": "maybe"})


def test_mqar_config_checks_fit():
    with pytest.raises(ConfigError, match="seq_len >= 64"):
        MQARConfig(seq_len=32, num_kv_pairs=16)
    MQARConfig(seq_len=64, num_kv_pairs=16, vocab_size=64)


def test_parse_overrides_sections():
    assert parse_overrides(["model.a=1", "task.b = x", "train.c=2"]) == {
        "model": {"a": "1"}, "task": {"b": "x"}, "train": {"c": "2"}}


def test_train_config_defaults_are_valid():
    TrainConfig()
