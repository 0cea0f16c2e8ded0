"""ListOps with the Long Range Arena's rules (Tay et al. 2021, after Nangia & Bowman 2018).

A sequence is a nested expression in prefix notation; the label is its value, a digit 0-9 (10
classes). Operators: MIN, MAX, MED (median, rounded down: ``int(np.median(args))``) and SM (sum mod
10), each taking 2..``max_args`` arguments. Trees are drawn like LRA's ``generate_tree``: a node at
depth < ``max_depth`` (root at depth 1) is an operator with probability ``op_prob`` (0.25), otherwise
a uniform digit; nodes at ``max_depth`` are digits. Only trees whose token count (operators, digits
and closing brackets; LRA's parentheses carry no information and are dropped) lies in
[``min_len``, ``max_len``] are kept. Train, val and test are each free of duplicates, and val/test
hold no sequence that is in an earlier split (train, then val).

Tokens: 0 pad, 1..10 the digits 0..9, 11 ``[MIN``, 12 ``[MAX``, 13 ``[MED``, 14 ``[SM``, 15 ``]``.
Sequences are left-padded to ``seq_len = max_len`` so the last position is the closing ``]``.

Worked example (max_len=12)::

    expression: [MAX 2 9 [MIN 4 7 ] 0 ]                   value: max(2, 9, min(4, 7), 0) = 9
    tokens    : 0 0 0 12 3 10 11 5 8 15 1 15              (left padding, then the 9 tokens)
    target    : 9

Generation is vectorised over a batch of trees, one depth level at a time (numpy): nodes are drawn
level by level, sizes and values are reduced bottom-up with ``ufunc.reduceat`` over each parent's
contiguous children, and token positions are assigned top-down by cumulative sums of sibling sizes.
LRA's reference is a recursive Python function per tree. Measured on this project's 2-core CPU:
9,600 expressions at the paper preset (500-2048 tokens, ~8% of drawn trees accepted) took 3.1 s of
CPU time, so the preset's 96,000-expression training split needs about 31 s of CPU (extrapolated;
wall time grows with the machine's load). Its tokens are int64 as the data contract asks: 96k x 2048
tokens are 1.6 GB in memory and in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqbench.api import (
    MAX_FRUITLESS_BATCHES,
    TaskInfo,
    TensorTaskData,
    UserError,
    earlier_splits,
    require,
    row_digests,
    take_new_rows,
)

PAD = 0
DIGIT0 = 1  # token of digit d is DIGIT0 + d
OPERATORS = ("MIN", "MAX", "MED", "SM")
OP0 = 11  # token of OPERATORS[i] is OP0 + i
END = 15
VOCAB_SIZE = 16
TOKEN_NAMES = ["<pad>", *map(str, range(10)), *(f"[{op}" for op in OPERATORS), "]"]


@dataclass(frozen=True)
class ListOpsConfig:
    min_len: int = 16  # fewest tokens in a kept expression (LRA: 500)
    max_len: int = 128  # most tokens in a kept expression; also seq_len (LRA: 2000; the paper's L: 2048)
    max_depth: int = 10  # deepest level of the tree, root = 1 (LRA: 10)
    max_args: int = 10  # operators take 2..max_args arguments (LRA: 10)
    op_prob: float = 0.25  # chance that a node above max_depth is an operator (LRA's VALUE_P)
    num_train: int = 20_000
    num_val: int = 500
    num_test: int = 2_000

    def __post_init__(self) -> None:
        for name in ("num_train", "num_val", "num_test"):
            require(getattr(self, name) > 0, f"task.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.min_len >= 1, "task.min_len", f"must be >= 1, got {self.min_len}")
        require(self.max_len >= self.min_len, "task.max_len",
                f"{self.max_len} is below task.min_len {self.min_len}; raise task.max_len")
        require(2 <= self.max_depth <= 64, "task.max_depth", f"must be in [2, 64], got {self.max_depth}")
        require(self.max_args >= 2, "task.max_args", f"operators take at least 2 arguments, got {self.max_args}")
        require(0 < self.op_prob < 1, "task.op_prob", f"must be in (0, 1), got {self.op_prob}")
        require(self.min_len <= self.longest_tree(), "task.min_len",
                f"no tree of depth {self.max_depth} with {self.max_args} arguments per operator has "
                f"{self.min_len} tokens (at most {self.longest_tree()}); lower task.min_len")

    def longest_tree(self) -> int:
        size = 1
        for _ in range(self.max_depth - 1):
            size = 2 + self.max_args * size
        return size


@dataclass
class _Level:
    """The nodes at one depth of a batch of trees; children of a node are contiguous in the next level."""

    tree: np.ndarray  # (m,) index of each node's tree
    parent: np.ndarray  # (m,) index of each node's parent in the previous level
    is_op: np.ndarray  # (m,) bool
    symbol: np.ndarray  # (m,) operator index for operators, digit for leaves
    nargs: np.ndarray  # (m,) number of children (0 for leaves)

    def take(self, keep: np.ndarray, parent_map: np.ndarray, tree_map: np.ndarray) -> _Level:
        return _Level(tree_map[self.tree[keep]], parent_map[self.parent[keep]], self.is_op[keep],
                      self.symbol[keep], self.nargs[keep])


def _draw_levels(c: ListOpsConfig, n: int, rng: np.random.Generator) -> list[_Level]:
    tree = np.arange(n, dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    levels = []
    for depth in range(1, c.max_depth + 1):
        m = len(tree)
        if m == 0:
            break
        is_op = rng.random(m) < c.op_prob if depth < c.max_depth else np.zeros(m, dtype=bool)
        symbol = np.where(is_op, rng.integers(0, len(OPERATORS), m), rng.integers(0, 10, m))
        nargs = np.where(is_op, rng.integers(2, c.max_args + 1, m), 0)
        levels.append(_Level(tree, parent, is_op, symbol, nargs))
        parent = np.repeat(np.arange(m), nargs)  # children in parent order: each parent's are contiguous
        tree = tree[parent]
    return levels


def _keep_trees(levels: list[_Level], keep_tree: np.ndarray) -> list[_Level]:
    tree_map = np.cumsum(keep_tree) - 1
    kept, parent_map = [], np.array([-1])
    for level in levels:
        keep = keep_tree[level.tree]
        kept.append(level.take(keep, parent_map, tree_map))
        parent_map = np.cumsum(keep) - 1
        if not keep.any():
            break
    return [level for level in kept if len(level.tree)]


def _evaluate(levels: list[_Level]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Bottom-up: token count of each node's subtree and each node's value."""
    sizes: list[np.ndarray] = [np.empty(0)] * len(levels)
    values: list[np.ndarray] = [np.empty(0)] * len(levels)
    for d in range(len(levels) - 1, -1, -1):
        level = levels[d]
        size = np.where(level.is_op, 2, 1).astype(np.int64)
        value = level.symbol.copy()
        if d + 1 < len(levels):
            child, child_size, child_value = levels[d + 1], sizes[d + 1], values[d + 1]
            size += np.bincount(child.parent, weights=child_size, minlength=len(size)).astype(np.int64)
            ops = np.flatnonzero(level.is_op)
            starts = (np.cumsum(level.nargs) - level.nargs)[ops]  # first child of each operator
            counts = level.nargs[ops]
            ordered = child_value[np.lexsort((child_value, child.parent))]  # sorted within each parent
            lo = ordered[starts + (counts - 1) // 2]
            hi = ordered[starts + counts // 2]
            results = np.stack([
                np.minimum.reduceat(child_value, starts),
                np.maximum.reduceat(child_value, starts),
                (lo + hi) // 2,  # int(np.median): the mean of the middle pair, rounded down
                np.add.reduceat(child_value, starts) % 10,
            ])  # (4, n_ops)
            value[ops] = results[level.symbol[ops], np.arange(len(ops))]
        sizes[d], values[d] = size, value
    return sizes, values


def _serialise(levels: list[_Level], sizes: list[np.ndarray], n: int, seq_len: int) -> np.ndarray:
    """Top-down: each node's position in its (left-padded) sequence; write operator, digit and ``]``."""
    tokens = np.full((n, seq_len), PAD, dtype=np.int64)
    pos = seq_len - sizes[0]  # roots start after the left padding
    parent_pos = pos
    for d, level in enumerate(levels):
        if d > 0:
            excl = np.cumsum(sizes[d]) - sizes[d]  # token offset of each node within its level
            first_child = (np.cumsum(levels[d - 1].nargs) - levels[d - 1].nargs)[level.parent]
            pos = parent_pos[level.parent] + 1 + excl - excl[first_child]
        token = np.where(level.is_op, OP0 + level.symbol, DIGIT0 + level.symbol)
        tokens[level.tree, pos] = token
        ops = level.is_op
        tokens[level.tree[ops], pos[ops] + sizes[d][ops] - 1] = END
        parent_pos = pos
    return tokens


def sample_listops(c: ListOpsConfig, num_roots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num_roots`` trees, keep those with min_len..max_len tokens: (tokens (n, max_len), labels (n,))."""
    levels = _draw_levels(c, num_roots, rng)
    length = np.zeros(num_roots, dtype=np.int64)
    for level in levels:
        length += np.bincount(level.tree, weights=np.where(level.is_op, 2, 1), minlength=num_roots).astype(np.int64)
    keep_tree = (length >= c.min_len) & (length <= c.max_len)
    n = int(keep_tree.sum())
    if n == 0:
        return np.zeros((0, c.max_len), dtype=np.int64), np.zeros(0, dtype=np.int64)
    levels = _keep_trees(levels, keep_tree)
    sizes, values = _evaluate(levels)
    return _serialise(levels, sizes, n, c.max_len), values[0].astype(np.int64)


def generate_listops(c: ListOpsConfig, num_examples: int, rng: np.random.Generator,
                     exclude: set[bytes] = frozenset()) -> dict[str, torch.Tensor]:
    """``num_examples`` distinct expressions not in ``exclude`` (row digests of earlier splits)."""
    seen = set(exclude)
    tokens, labels, have = [], [], 0
    accept_rate = 0.01  # updated from each batch, so batches size themselves to what is still needed
    fruitless = 0
    while have < num_examples:
        roots = int(min(50_000, max(1_000, 1.3 * (num_examples - have) / accept_rate)))
        batch_tokens, batch_labels = sample_listops(c, roots, rng)
        accept_rate = max(len(batch_labels) / roots, 1e-4)
        keep = take_new_rows(row_digests(torch.from_numpy(batch_tokens)), seen, num_examples - have)
        tokens.append(batch_tokens[keep])
        labels.append(batch_labels[keep])
        have += len(keep)
        fruitless = 0 if keep else fruitless + 1
        if fruitless == MAX_FRUITLESS_BATCHES:
            raise UserError(f"listops found only {have} of {num_examples} distinct new expressions with "
                            f"{c.min_len}-{c.max_len} tokens; widen the range (task.min_len, task.max_len) or "
                            "lower task.num_train/num_val/num_test")
    return {"tokens": torch.from_numpy(np.concatenate(tokens)), "targets": torch.from_numpy(np.concatenate(labels))}


def decode(tokens: torch.Tensor) -> str:
    """Token ids of one sequence -> the expression, padding dropped (for reading examples)."""
    return " ".join(TOKEN_NAMES[t] for t in tokens.tolist() if t != PAD)


class ListOpsData(TensorTaskData):
    def info(self) -> TaskInfo:
        return TaskInfo(vocab_size=VOCAB_SIZE, seq_len=self.config.max_len, num_classes=10,
                        target="sequence", pad_id=PAD)

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        size = self.split_size(split)
        exclude = {d for s in earlier_splits(split) for d in row_digests(self.split_data(s)["tokens"])}
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return generate_listops(c, size, rng, exclude)
