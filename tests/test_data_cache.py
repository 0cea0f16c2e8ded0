"""The data cache, per-split seed streams and fingerprints of TensorTaskData, on a toy task and the built-ins."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from seqbench.api import TaskInfo
from seqbench.registry import build_registries, load_target
from seqbench.train.data import SPLITS, TensorTaskData, fingerprint


@dataclass(frozen=True)
class ToyConfig:
    n: int = 8
    seq_len: int = 6


class ToyData(TensorTaskData):
    name = "toy"
    version = 1

    def info(self) -> TaskInfo:
        return TaskInfo(name=self.name, vocab_size=10, seq_len=self.config.seq_len, num_classes=10,
                        target="token", causal=True)

    def generate(self, split, generator):
        tokens = torch.randint(0, 10, (self.config.n, self.config.seq_len), generator=generator)
        return {"tokens": tokens, "targets": tokens.roll(-1, dims=1)}


class ToyDataV2(ToyData):
    version = 2


def _refuse(self, split, generator):
    raise AssertionError("generate() was called although the split is cached")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _splits(data: TensorTaskData) -> dict[str, dict[str, torch.Tensor]]:
    data.setup()
    return data.splits


def _assert_same(a, b):
    for split in SPLITS:
        for key in a[split]:
            assert torch.equal(a[split][key], b[split][key]), (split, key)


def test_second_setup_loads_every_split_from_disk(cache, monkeypatch):
    first = ToyData(ToyConfig(), seed=3, batch_size=4)
    original = _splits(first)
    assert {source for source, _ in first.load_report.values()} == {"generated"}
    assert len(list((cache / "toy").glob("*.pt"))) == len(SPLITS)

    monkeypatch.setattr(ToyData, "generate", _refuse)
    second = ToyData(ToyConfig(), seed=3, batch_size=4)
    _assert_same(original, _splits(second))
    assert {source for source, _ in second.load_report.values()} == {"cache"}
    assert second.data_fingerprint() == first.data_fingerprint()


def test_cache_key_depends_on_config_seed_split_and_version(cache):
    base = ToyData(ToyConfig(), seed=0, batch_size=4)
    keys = {
        base.cache_key("train"),
        base.cache_key("test"),
        ToyData(ToyConfig(n=9), seed=0, batch_size=4).cache_key("train"),
        ToyData(ToyConfig(), seed=1, batch_size=4).cache_key("train"),
        ToyDataV2(ToyConfig(), seed=0, batch_size=4).cache_key("train"),
    }
    assert len(keys) == 5
    assert ToyData(ToyConfig(), seed=0, batch_size=64).cache_key("train") == base.cache_key("train")  # not data


def test_changed_version_regenerates_instead_of_loading(cache, monkeypatch):
    _splits(ToyData(ToyConfig(), seed=0, batch_size=4))
    monkeypatch.setattr(ToyData, "generate", _refuse)
    with pytest.raises(AssertionError, match="cached"):
        ToyDataV2(ToyConfig(), seed=0, batch_size=4).setup()


def test_generation_is_deterministic_per_seed_and_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path))  # "off" must not fall back to ~/.cache
    a = _splits(ToyData(ToyConfig(), seed=5, batch_size=4))
    b = _splits(ToyData(ToyConfig(), seed=5, batch_size=4))
    _assert_same(a, b)
    other_seed = _splits(ToyData(ToyConfig(), seed=6, batch_size=4))
    assert not torch.equal(a["train"]["tokens"], other_seed["train"]["tokens"])
    assert not torch.equal(a["train"]["tokens"], a["test"]["tokens"])  # splits have their own streams
    assert not any(tmp_path.rglob("*.pt"))


def test_fingerprint_changes_with_the_data():
    tokens = torch.arange(12).view(3, 4)
    base = fingerprint({"tokens": tokens, "targets": tokens})
    changed = tokens.clone()
    changed[2, 3] += 1
    assert fingerprint({"tokens": tokens.clone(), "targets": tokens.clone()}) == base
    assert fingerprint({"tokens": changed, "targets": tokens}) != base
    assert fingerprint({"tokens": tokens.view(4, 3), "targets": tokens}) != base  # shape is part of it
    assert fingerprint({"tokens": tokens.int(), "targets": tokens}) != base  # dtype too


def test_data_fingerprint_differs_between_seeds(cache):
    assert (ToyData(ToyConfig(), seed=0, batch_size=4).data_fingerprint()
            != ToyData(ToyConfig(), seed=1, batch_size=4).data_fingerprint())


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_structure"])
def test_damaged_cache_file_is_regenerated(cache, damage):
    original = _splits(ToyData(ToyConfig(), seed=2, batch_size=4))
    victim = ToyData(ToyConfig(), seed=2, batch_size=4)
    path = victim.cache_path("val")
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        torch.save({"tokens": torch.zeros(3, 6, dtype=torch.long)}, path)  # loads, but has no targets
    with pytest.warns(UserWarning, match=f"data cache entry {path} is not usable"):
        _assert_same(original, _splits(victim))
    assert victim.load_report["val"][0] == "generated"
    assert victim.load_report["train"][0] == "cache"
    reloaded = torch.load(path, weights_only=True)
    assert torch.equal(reloaded["tensors"]["targets"], original["val"]["targets"])


def test_tampered_cache_entry_is_refused_by_its_digest_and_regenerated(cache, monkeypatch):
    original = _splits(ToyData(ToyConfig(), seed=2, batch_size=4))
    victim = ToyData(ToyConfig(), seed=2, batch_size=4)
    path = victim.cache_path("test")
    entry = torch.load(path, weights_only=True)
    entry["tensors"]["targets"][0, 0] += 1  # a well-formed entry whose test targets were changed
    torch.save(entry, path)
    with pytest.warns(UserWarning, match=f"{path}.*do not match the sha256"):
        _assert_same(original, _splits(victim))
    assert victim.load_report["test"][0] == "generated"
    assert victim.load_report["val"][0] == "cache"

    monkeypatch.setattr(ToyData, "generate", _refuse)  # the regenerated entry is trusted again
    _assert_same(original, _splits(ToyData(ToyConfig(), seed=2, batch_size=4)))


GENERATED_TASKS = ["mqar", "listops", "assoc_recall"]


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_builtin_tasks_are_cached_deterministic_and_fingerprinted(task, cache, monkeypatch):
    spec = build_registries().tasks.get(task)
    config_cls, data_cls = load_target(spec.config), load_target(spec.build)
    config = config_cls(**spec.presets["smoke"]["task"])
    first = data_cls(config, seed=0, batch_size=8)
    fp = first.data_fingerprint()
    assert len(fp) == 16

    monkeypatch.setattr(data_cls, "generate", _refuse)
    cached = data_cls(config, seed=0, batch_size=8)
    assert cached.data_fingerprint() == fp

    monkeypatch.undo()  # restores generate; then regenerate from scratch, without the cache
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", "off")
    assert data_cls(config, seed=0, batch_size=8).data_fingerprint() == fp  # same data without the cache
    assert data_cls(config, seed=1, batch_size=8).data_fingerprint() != fp
