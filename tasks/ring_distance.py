"""Ring distance: how far apart, along a ring, are two marked nodes? (The seed paper's Fig. 7.)

A ring of ``num_nodes`` (N) nodes; two distinct nodes are marked, drawn uniformly at random. The label
is their shortest-path distance along the ring, ``d = min(|i - j|, N - |i - j|)``, so ``1 <= d <= N // 2``.

One example, two views:

- graph view: node features = the mark bit, edges = the ring (``TaskInfo.topology == "ring"``; graph
  models build the edges, see ``seqbench_plugins.graph_common``);
- sequence view: the N nodes in ring order as tokens (0 unmarked, 1 marked). A sequence model must
  learn the wrap-around itself: the marks at positions 0 and N - 1 are 1 apart.

Classes are the distances themselves: ``num_classes = N // 2 + 1`` and class 0 is never a target, so
a prediction's class is directly a distance. Scored as accuracy; the task is ``ordinal``, so the
harness also records ``mae``, the mean absolute error of the predicted distance.

Worked example (N = 8, marks at nodes 1 and 6)::

    tokens : 0 1 0 0 0 0 1 0
    target : 3            (6 -> 7 -> 0 -> 1 around the wrap; 5 hops the other way)

Every unordered pair is equally likely, so distance d < N / 2 has probability 2 / (N - 1) and, for even
N, d = N / 2 has 1 / (N - 1): predicting one distance scores at most 2 / (N - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqbench.api import TaskInfo, TensorTaskData, require


@dataclass(frozen=True)
class RingDistanceConfig:
    num_nodes: int = 20  # N; the seed paper sweeps 20..100
    num_train: int = 20_000
    num_val: int = 500
    num_test: int = 2_000

    def __post_init__(self) -> None:
        require(self.num_nodes >= 3, "task.num_nodes",
                f"a ring needs at least 3 nodes, got {self.num_nodes}; use e.g. task.num_nodes=20")
        for name in ("num_train", "num_val", "num_test"):
            require(getattr(self, name) > 0, f"task.{name}", f"must be > 0, got {getattr(self, name)}")


def generate_ring_distance(config: RingDistanceConfig, num_examples: int,
                           generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Pure, vectorised generator: the same (config, generator state) gives the same tensors."""
    n, N = num_examples, config.num_nodes
    first = torch.randint(0, N, (n,), generator=generator)  # (n,)
    offset = torch.randint(1, N, (n,), generator=generator)  # (n,) clockwise hops to the second mark
    second = (first + offset) % N  # (n,) never equal to first
    rows = torch.arange(n)
    tokens = torch.zeros(n, N, dtype=torch.long)
    tokens[rows, first] = 1
    tokens[rows, second] = 1
    targets = torch.minimum(offset, N - offset)  # (n,) the shorter way round
    return {"tokens": tokens, "targets": targets}


class RingDistanceData(TensorTaskData):
    def info(self) -> TaskInfo:
        N = self.config.num_nodes
        return TaskInfo(vocab_size=2, seq_len=N, num_classes=N // 2 + 1, target="sequence",
                        topology="ring", ordinal=True)

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        size = self.split_size(split)
        return generate_ring_distance(self.config, size, generator)
