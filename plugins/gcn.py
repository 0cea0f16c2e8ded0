"""Graph convolutional network (Kipf & Welling) from torch_geometric's ``GCNConv``.

Each layer mixes a node with its neighbours, so after ``n_layers`` layers a node has seen exactly its
``n_layers``-hop neighbourhood and nothing beyond it. Nodes carry their token only, no position: on
the ring that is the point of the seed paper's Fig. 7 (a 3-layer GCN cannot relate two marks more
than 2 * 3 hops apart). Sequences are seen as chain graphs (see ``graph_common``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv

from seqbench.api import TaskInfo, require
from seqbench_plugins.graph_common import GraphReadout, PositionGraph


@dataclass(frozen=True)
class GCNConfig:
    d_model: int = 64
    n_layers: int = 3  # the seed paper's GCN; also its receptive field in hops
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")


class GCN(nn.Module):
    """Token embedding -> ``n_layers`` x (per-node LayerNorm, GCNConv, ReLU, residual) -> readout."""

    def __init__(self, c: GCNConfig, info: TaskInfo):
        super().__init__()
        self.graph = PositionGraph(info)
        self.embed = nn.Embedding(info.vocab_size, c.d_model)
        # Per-node norms (never across nodes or graphs): a norm over the whole graph would let a
        # node see its future on causal tasks and would widen the receptive field.
        self.norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(c.n_layers))
        self.convs = nn.ModuleList(GCNConv(c.d_model, c.d_model) for _ in range(c.n_layers))
        self.dropout = c.dropout
        self.readout = GraphReadout(info, c.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        edge_index, batch = self.graph(B, T, tokens.device)  # (2, B * E), (B * T,)
        x = self.embed(tokens).reshape(B * T, -1)  # (B * T, D)
        for norm, conv in zip(self.norms, self.convs, strict=True):
            h = F.relu(conv(norm(x), edge_index))  # (B * T, D)
            x = x + F.dropout(h, p=self.dropout, training=self.training)
        return self.readout(x, batch, tokens)


def build(config: GCNConfig, info: TaskInfo) -> GCN:
    return GCN(config, info)
