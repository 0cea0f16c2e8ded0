"""Associative recall with the H3/Hyena semantics (safari's ``generate_assoc_recall``, one-token keys).

The vocabulary holds two special tokens (``.`` noop and ``=>`` copy prefix) and ``vocab_size - 2``
ordinary ones, split in half: keys and values. Every sequence draws its own key->value map (each key
gets a uniform value; values may repeat across keys), then ``input_seq_len // 2`` pairs ``k v`` with
keys drawn uniformly with replacement (so keys repeat and a later pair restates the same binding),
then ``=>`` and a query key, uniform over the keys that occurred. The answer is the query's value.
As in safari the model reads ``input_seq_len + 2`` tokens and predicts the next token everywhere
(targets = tokens shifted by one). Training scores all next-token positions, as safari does (a value
after a repeated key is itself a recall); val and test score only the final prediction, the answer:
their targets are ``ignore_index`` elsewhere. Chance on the answer is ``1 / num_values``.
Within each split sequences are distinct (safari's ``torch.unique``), and val/test hold no sequence
that is in an earlier split. Generation is vectorised in torch: the paper preset's 4,000 training
sequences of 1,026 tokens took 0.33 s of CPU time on this project's 2-core CPU.

Token ids: 0 ``.``, 1 ``=>``, keys ``2 .. 2+K-1``, values ``2+K .. vocab_size-1`` with
``K = (vocab_size - 2) // 2``.

Worked example (vocab_size=10: keys 2..5, values 6..9; input_seq_len=6)::

    sequence : 3 7 5 6 3 7 => 5 | 6          (the map binds 3->7, 5->6; the query is 5)
    tokens   : 3 7 5 6 3 7 1 5               (=> is token 1)
    train    : 7 5 6 3 7 1 5 6               (next token at every position)
    test     : . . . . . . . 6               (. = ignore_index: only the answer is scored)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqbench.api import (
    IGNORE_INDEX,
    MAX_FRUITLESS_BATCHES,
    TaskInfo,
    TensorTaskData,
    UserError,
    earlier_splits,
    require,
    row_digests,
    take_new_rows,
)

NOOP = 0
COPY_PREFIX = 1
NUM_SPECIAL = 2


@dataclass(frozen=True)
class AssocRecallConfig:
    vocab_size: int = 30  # including the 2 special tokens (Hyena's associative recall uses 30)
    input_seq_len: int = 64  # tokens of key-value pairs; the model reads input_seq_len + 2 tokens
    num_train: int = 20_000
    num_val: int = 500
    num_test: int = 1_000

    def __post_init__(self) -> None:
        for name in ("num_train", "num_val", "num_test"):
            require(getattr(self, name) > 0, f"task.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.vocab_size >= NUM_SPECIAL + 2, "task.vocab_size",
                f"needs 2 special tokens plus at least one key and one value (>= 4), got {self.vocab_size}")
        require(self.input_seq_len >= 2, "task.input_seq_len",
                f"must hold at least one key-value pair (>= 2), got {self.input_seq_len}")

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - NUM_SPECIAL) // 2

    @property
    def seq_len(self) -> int:
        return 2 * (self.input_seq_len // 2) + 2  # pairs, then "=>" and the query key


def sample_assoc_recall(c: AssocRecallConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` full sequences (pairs, ``=>``, query, answer): ``(n, seq_len + 1)`` int64."""
    num_keys, num_values, pairs = c.num_keys, c.vocab_size - NUM_SPECIAL - c.num_keys, c.input_seq_len // 2
    value_of = NUM_SPECIAL + num_keys + torch.randint(0, num_values, (n, num_keys), generator=generator)  # (n, K)
    keys = torch.randint(0, num_keys, (n, pairs), generator=generator)  # (n, P) key indices
    present = torch.zeros(n, num_keys, dtype=torch.bool).scatter_(1, keys, True)  # (n, K)
    # uniform over the keys that occurred: safari redraws a missing key uniformly from the present ones,
    # which makes every present key equally likely
    score = torch.rand(n, num_keys, generator=generator).masked_fill(~present, -1.0)
    query = score.argmax(dim=1, keepdim=True)  # (n, 1)
    seq = torch.empty(n, 2 * pairs + 3, dtype=torch.long)
    seq[:, 0:2 * pairs:2] = NUM_SPECIAL + keys
    seq[:, 1:2 * pairs:2] = value_of.gather(1, keys)
    seq[:, -3] = COPY_PREFIX
    seq[:, -2:-1] = NUM_SPECIAL + query
    seq[:, -1:] = value_of.gather(1, query)
    return seq


def generate_assoc_recall(c: AssocRecallConfig, num_examples: int, generator: torch.Generator, *,
                          score_all: bool, exclude: set[bytes] = frozenset()) -> dict[str, torch.Tensor]:
    """Distinct sequences not in ``exclude``; targets at every position (``score_all``) or the answer only."""
    seen = set(exclude)
    rows: list[torch.Tensor] = []
    fruitless = 0
    while len(rows) < num_examples:
        batch = sample_assoc_recall(c, 2 * (num_examples - len(rows)) + 16, generator)
        keep = take_new_rows(row_digests(batch), seen, num_examples - len(rows))
        rows.extend(batch[i] for i in keep)
        fruitless = 0 if keep else fruitless + 1
        if fruitless == MAX_FRUITLESS_BATCHES:
            raise UserError(f"assoc_recall found only {len(rows)} of {num_examples} distinct new sequences: the "
                            f"configuration allows too few; raise task.vocab_size or task.input_seq_len, or "
                            "lower task.num_train/num_val/num_test")
    seq = torch.stack(rows)  # (N, T + 1)
    targets = seq[:, 1:].clone()
    if not score_all:
        targets[:, :-1] = IGNORE_INDEX
    return {"tokens": seq[:, :-1].contiguous(), "targets": targets}


class AssocRecallData(TensorTaskData):
    def info(self) -> TaskInfo:
        c = self.config
        # evaluation scores only the answer, each row's last position (the module docstring)
        return TaskInfo(vocab_size=c.vocab_size, seq_len=c.seq_len, num_classes=c.vocab_size,
                        target="token", eval_scores="last")

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        size = self.split_size(split)
        # digests of whole sequences (answer included) from earlier splits
        exclude = set()
        for s in earlier_splits(split):
            data = self.split_data(s)
            exclude.update(row_digests(torch.cat([data["tokens"], _answers(data)], dim=1)))
        return generate_assoc_recall(c, size, generator, score_all=split == "train", exclude=exclude)


def _answers(data: dict[str, torch.Tensor]) -> torch.Tensor:
    return data["targets"][:, -1:]  # (N, 1): the last target is the answer in every split
