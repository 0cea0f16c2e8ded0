from __future__ import annotations

import torch

from seqbench.api import IGNORE_INDEX
from seqbench.train.data import split_generator
from seqbench_tasks.mqar import MQARConfig, MQARData, generate_mqar


def _recall_by_lookup(tokens: torch.Tensor, num_kv_pairs: int) -> dict[int, int]:
    """Independent evaluator: position -> expected value, by reading the context like a dictionary."""
    table = {int(tokens[i]): int(tokens[i + 1]) for i in range(0, 2 * num_kv_pairs, 2)}
    return {pos: table[int(tokens[pos])] for pos in range(2 * num_kv_pairs, len(tokens))
            if int(tokens[pos]) in table}


def test_worked_example_shape_and_semantics():
    config = MQARConfig(vocab_size=16, seq_len=16, num_kv_pairs=2)
    data = generate_mqar(config, 200, torch.Generator().manual_seed(0))
    tokens, targets = data["tokens"], data["targets"]
    assert tokens.shape == targets.shape == (200, 16)
    keys, values = tokens[:, 0:4:2], tokens[:, 1:4:2]
    assert ((1 <= keys) & (keys < 8)).all() and ((8 <= values) & (values < 16)).all()
    assert (keys[:, 0] != keys[:, 1]).all()  # distinct keys within a sequence


def test_labels_match_an_independent_lookup_and_positions():
    config = MQARConfig(vocab_size=64, seq_len=64, num_kv_pairs=8)
    data = generate_mqar(config, 300, torch.Generator().manual_seed(1))
    for tokens, targets in zip(data["tokens"], data["targets"]):
        scored = (targets != IGNORE_INDEX).nonzero().flatten().tolist()
        assert len(scored) == config.num_kv_pairs  # each key queried exactly once
        assert all(p >= 2 * config.num_kv_pairs and (p - 2 * config.num_kv_pairs) % 2 == 0 for p in scored)
        lookup = _recall_by_lookup(tokens, config.num_kv_pairs)
        for p in scored:
            assert lookup[p] == int(targets[p])
        queried = sorted(int(tokens[p]) for p in scored)
        assert queried == sorted(tokens[0:16:2].tolist())


def test_generation_is_deterministic_and_splits_differ():
    config = MQARConfig(num_train=64, num_val=64, num_test=64)
    a = MQARData(config, seed=5, batch_size=8)
    b = MQARData(config, seed=5, batch_size=8)
    a.setup(), b.setup()
    assert torch.equal(a.splits["train"]["tokens"], b.splits["train"]["tokens"])
    assert a.data_fingerprint() == b.data_fingerprint()
    assert not torch.equal(a.splits["train"]["tokens"], a.splits["test"]["tokens"])
    c = MQARData(config, seed=6, batch_size=8)
    assert c.data_fingerprint() != a.data_fingerprint()


def test_split_seed_streams_are_distinct():
    draws = {split: torch.randint(0, 2**31, (4,), generator=split_generator(0, split)).tolist()
             for split in ("train", "val", "test")}
    assert len({tuple(v) for v in draws.values()}) == 3


def test_query_gaps_favour_short_distances():
    config = MQARConfig(vocab_size=64, seq_len=256, num_kv_pairs=8)
    data = generate_mqar(config, 2000, torch.Generator().manual_seed(2))
    positions = (data["targets"] != IGNORE_INDEX).nonzero()[:, 1].float() - 2 * config.num_kv_pairs
    first_half = (positions < (256 - 16) / 2).float().mean()
    assert first_half > 0.6  # power law with alpha=0.01 puts most queries early


def test_zero_filler_keeps_the_pairs_and_queries_and_zeroes_the_rest():
    """``random_non_queries=False`` (zoology's Figure 2): same pairs, queries and targets, filler 0."""
    random_filler = MQARConfig(vocab_size=64, seq_len=64, num_kv_pairs=4)
    zero_filler = MQARConfig(vocab_size=64, seq_len=64, num_kv_pairs=4, random_non_queries=False)
    a = generate_mqar(random_filler, 100, torch.Generator().manual_seed(3))
    b = generate_mqar(zero_filler, 100, torch.Generator().manual_seed(3))
    assert torch.equal(a["targets"], b["targets"])
    context = 2 * zero_filler.num_kv_pairs
    query = b["targets"] != IGNORE_INDEX
    assert torch.equal(a["tokens"][:, :context], b["tokens"][:, :context])
    assert torch.equal(a["tokens"][query], b["tokens"][query])
    filler = ~query
    filler[:, :context] = False
    assert (b["tokens"][filler] == 0).all()
    assert (a["tokens"][filler] != 0).float().mean() > 0.9  # the default's filler is random tokens
