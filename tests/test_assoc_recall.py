"""Associative recall (safari semantics): answers checked by re-reading each sequence's pairs."""

from __future__ import annotations

import pytest
import torch

from seqbench.api import IGNORE_INDEX
from seqbench.configure.config import ConfigError
from seqbench.errors import UserError
from seqbench.train.data import row_digests
from seqbench_tasks.assoc_recall import COPY_PREFIX, AssocRecallConfig, AssocRecallData, sample_assoc_recall


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path / "cache"))


def check_sequence(tokens: list[int], answer: int, c: AssocRecallConfig) -> None:
    """Independent reading: pairs bind consistently, the query occurred, the answer is its value."""
    keys = range(2, 2 + c.num_keys)
    values = range(2 + c.num_keys, c.vocab_size)
    *pairs, prefix, query = tokens
    assert prefix == COPY_PREFIX
    binding: dict[int, int] = {}
    for k, v in zip(pairs[0::2], pairs[1::2]):
        assert k in keys and v in values
        assert binding.setdefault(k, v) == v, "a key was bound to two values in one sequence"
    assert query in binding, "the query key never occurred"
    assert answer == binding[query]


@pytest.mark.parametrize("config", [
    AssocRecallConfig(vocab_size=10, input_seq_len=16, num_train=200, num_val=50, num_test=50),
    AssocRecallConfig(vocab_size=30, input_seq_len=101, num_train=100, num_val=20, num_test=20),  # odd length
])
def test_every_answer_is_the_query_keys_value(config):
    data = AssocRecallData(config, seed=0, batch_size=8)
    data.setup()
    assert config.seq_len == 2 * (config.input_seq_len // 2) + 2
    for split in ("train", "val", "test"):
        tokens, targets = data.splits[split]["tokens"], data.splits[split]["targets"]
        assert tokens.shape == targets.shape == (getattr(config, f"num_{split}"), config.seq_len)
        for row, answer in zip(tokens.tolist(), targets[:, -1].tolist()):
            check_sequence(row, answer, config)


def test_train_scores_every_next_token_and_test_only_the_answer():
    c = AssocRecallConfig(vocab_size=10, input_seq_len=16, num_train=64, num_val=16, num_test=16)
    data = AssocRecallData(c, seed=0, batch_size=8)
    data.setup()
    train = data.splits["train"]
    assert torch.equal(train["targets"][:, :-1], train["tokens"][:, 1:])
    for split in ("val", "test"):
        targets = data.splits[split]["targets"]
        assert (targets[:, :-1] == IGNORE_INDEX).all()
        assert (targets[:, -1] >= 2 + c.num_keys).all()  # the answer is a value token


def test_query_is_uniform_over_the_keys_that_occurred():
    c = AssocRecallConfig(vocab_size=10, input_seq_len=4)  # 2 pairs over 4 keys: often only 1-2 keys occur
    seq = sample_assoc_recall(c, 20_000, torch.Generator().manual_seed(0))
    first, second, query = seq[:, 0], seq[:, 2], seq[:, -2]
    two_keys = first != second
    picked_first = (query[two_keys] == first[two_keys]).double().mean().item()
    assert abs(picked_first - 0.5) < 0.02
    assert torch.equal(query[~two_keys], first[~two_keys])


def test_sequences_are_distinct_within_and_across_splits():
    c = AssocRecallConfig(vocab_size=8, input_seq_len=4, num_train=40, num_val=10, num_test=10)  # 117 sequences
    data = AssocRecallData(c, seed=0, batch_size=8)
    data.setup()
    full = {s: row_digests(torch.cat([d["tokens"], d["targets"][:, -1:]], dim=1)) for s, d in data.splits.items()}
    for split, rows in full.items():
        assert len(set(rows)) == len(rows), split
    assert not set(full["train"]) & (set(full["val"]) | set(full["test"]))
    assert not set(full["val"]) & set(full["test"])


def test_an_exhausted_sequence_space_is_a_user_error():
    c = AssocRecallConfig(vocab_size=6, input_seq_len=4, num_train=40)  # only 20 distinct sequences exist
    with pytest.raises(UserError, match="only 20 of 40"):
        AssocRecallData(c, seed=0, batch_size=8).setup()


def test_worked_example_in_the_docstring():
    c = AssocRecallConfig(vocab_size=10, input_seq_len=6)
    assert c.num_keys == 4 and c.seq_len == 8
    check_sequence([3, 7, 5, 6, 3, 7, COPY_PREFIX, 5], 6, c)


def test_deterministic_per_seed():
    c = AssocRecallConfig(vocab_size=10, input_seq_len=16, num_train=32, num_val=8, num_test=8)
    a, b, other = (AssocRecallData(c, seed=s, batch_size=8) for s in (1, 1, 2))
    assert a.data_fingerprint() == b.data_fingerprint() != other.data_fingerprint()


def test_info_and_validation():
    info = AssocRecallData(AssocRecallConfig(), seed=0, batch_size=8).info()
    assert (info.vocab_size, info.num_classes, info.seq_len, info.target) == (30, 30, 66, "token")
    with pytest.raises(ConfigError, match="task.vocab_size"):
        AssocRecallConfig(vocab_size=3)
    with pytest.raises(ConfigError, match="task.input_seq_len"):
        AssocRecallConfig(input_seq_len=1)
