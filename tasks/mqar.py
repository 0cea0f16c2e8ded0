"""Multi-query associative recall (MQAR), with zoology's semantics.

Each sequence first lists ``num_kv_pairs`` key-value pairs (keys from the lower half of the
vocabulary, values from the upper half, both distinct within a sequence). Then every key is queried
once, at positions whose gaps follow a power law (``power_a``, zoology's 0.01), and the model must
emit the key's value right at the query position. Other positions hold filler tokens and are not
scored: accuracy = correct query positions / query positions. The filler is random tokens by default;
``random_non_queries=False`` makes it token 0 (a key or value never), zoology's setting of the same
name in its ICLR'24 Figure 2 configs.

Worked example (vocab_size=16, seq_len=16, num_kv_pairs=2; keys in 1..7, values in 8..15)::

    tokens : 3 9  5 12 | 3 x x x  5 x x x x x x x     (x = random filler)
    targets: . .  . .  | 9 . . .  12 . . . . . . .    (. = ignore_index, not scored)

The key 3 was bound to 9, so at the position of the query 3 the target is 9.

Generation is vectorised in torch. At the paper preset (vocab 8192, L 512, 64 pairs) 10,000 sequences
took 6.2 s of CPU time (one thread) on this project's 2-core CPU, so the 100,000-sequence training
split needs about a minute of CPU (extrapolated); the per-row argsort over 4,095 key candidates makes
its peak memory several GB when all 100,000 rows are drawn at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from seqbench.api import ADDED_LATER, IGNORE_INDEX, TaskInfo, TensorTaskData, require


@dataclass(frozen=True)
class MQARConfig:
    vocab_size: int = 64  # keys: [1, vocab/2), values: [vocab/2, vocab)
    seq_len: int = 64
    num_kv_pairs: int = 8
    power_a: float = 0.01  # power-law exponent of the query gaps (zoology's default)
    # filler: random tokens (True) or token 0 (False, zoology's Figure 2); added later: at True, older
    # runs' config hash is kept
    random_non_queries: bool = field(default=True, metadata=ADDED_LATER)
    num_train: int = 20_000
    num_val: int = 500
    num_test: int = 1_000

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "num_kv_pairs", "num_train", "num_val", "num_test"):
            require(getattr(self, name) > 0, f"task.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.power_a > 0, "task.power_a", f"must be > 0, got {self.power_a}")
        require(4 * self.num_kv_pairs <= self.seq_len, "task.num_kv_pairs",
                f"{self.num_kv_pairs} pairs need seq_len >= {4 * self.num_kv_pairs} (2 tokens per pair, and "
                f"room to query each key), but seq_len is {self.seq_len}; lower task.num_kv_pairs or raise "
                "task.seq_len")
        require(self.vocab_size // 2 - 1 >= self.num_kv_pairs, "task.vocab_size",
                f"{self.vocab_size} leaves {self.vocab_size // 2 - 1} distinct keys for {self.num_kv_pairs} "
                f"pairs; use task.vocab_size >= {2 * self.num_kv_pairs + 2}")


def _sample_without_replacement(weights: torch.Tensor, n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rows of ``k`` distinct indices drawn with probabilities ``weights`` (Gumbel top-k)."""
    uniform = torch.rand(n, weights.numel(), generator=generator, dtype=torch.float64).clamp_min(1e-300)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.topk(weights.log().unsqueeze(0) + gumbel, k, dim=1).indices


def generate_mqar(config: MQARConfig, num_examples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Pure, vectorised generator: the same (config, generator state) gives the same tensors."""
    n, k, T, V = num_examples, config.num_kv_pairs, config.seq_len, config.vocab_size
    rows = torch.arange(n).unsqueeze(1)
    key_ids = 1 + torch.rand(n, V // 2 - 1, generator=generator).argsort(dim=1)[:, :k]  # (n, k)
    value_ids = V // 2 + torch.rand(n, V - V // 2, generator=generator).argsort(dim=1)[:, :k]  # (n, k)

    context = 2 * k
    space = (T - context) // 2  # query slots: every other position after the context
    gap_weights = config.power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (config.power_a - 1)
    gaps = _sample_without_replacement(gap_weights / gap_weights.sum(), n, k, generator)  # (n, k)
    query_pos = context + 2 * gaps  # (n, k)

    if config.random_non_queries:
        tokens = torch.randint(0, V, (n, T), generator=generator)
    else:
        tokens = torch.zeros(n, T, dtype=torch.long)
    tokens[:, 0:context:2] = key_ids
    tokens[:, 1:context:2] = value_ids
    tokens[rows, query_pos] = key_ids
    targets = torch.full((n, T), IGNORE_INDEX, dtype=torch.long)
    targets[rows, query_pos] = value_ids
    return {"tokens": tokens, "targets": targets}


class MQARData(TensorTaskData):
    def info(self) -> TaskInfo:
        c = self.config
        return TaskInfo(vocab_size=c.vocab_size, seq_len=c.seq_len, num_classes=c.vocab_size,
                        target="token")

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        size = self.split_size(split)
        return generate_mqar(self.config, size, generator)
