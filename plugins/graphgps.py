"""GraphGPS (Rampasek et al.): local message passing plus global attention, from torch_geometric.

Each layer is PyG's ``GPSConv``: a local MPNN (``GINConv`` by default, or ``GCNConv``) and multi-head
attention over all nodes of the graph, summed, then an MLP. Node features are the token embedding
plus a projected Laplacian eigenvector positional encoding (GraphGPS's usual PE; without one a
1-layer model could not tell where on a ring its attention looked).

Causal tasks: the chain's edges already point only forward (``graph_common``), but ``GPSConv`` calls
its ``nn.MultiheadAttention`` with a padding mask only. :class:`CausalMultiheadAttention` is that same
module with a future mask added, swapped in for ``GPSConv.attn``; the rest of the layer is PyG's.
Norms are per node (PyG ``LayerNorm(mode="node")``), never over a graph or a batch, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, GPSConv

from seqbench.api import TaskInfo, require
from seqbench_plugins.graph_common import GraphReadout, PositionGraph, laplacian_pe


@dataclass(frozen=True)
class GraphGPSConfig:
    d_model: int = 64
    n_layers: int = 1  # the seed paper's GraphGPS
    n_heads: int = 4
    local: Literal["gin", "gcn"] = "gin"  # the local MPNN inside each GPSConv
    pe_dim: int = 8  # Laplacian eigenvectors used as positional encoding; 0 disables it
    dropout: float = 0.0  # GPSConv's dropout on the MPNN, attention and MLP outputs
    attn_dropout: float = 0.0  # dropout on attention weights

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.d_model % self.n_heads == 0, "model.n_heads",
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        require(self.pe_dim >= 0, "model.pe_dim", f"must be >= 0, got {self.pe_dim}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        require(0 <= self.attn_dropout < 1, "model.attn_dropout", f"must be in [0, 1), got {self.attn_dropout}")


class CausalMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` in which query position t never attends to a key position after t.

    ``GPSConv`` calls ``attn(h, h, h, key_padding_mask=..., need_weights=False)`` on the dense batch,
    whose positions are the graph's nodes in order, i.e. the sequence positions.
    """

    def forward(self, query, key, value, **kwargs):
        T = query.shape[-2]
        future = torch.ones(T, T, dtype=torch.bool, device=query.device).triu(1)  # (T, T), True = masked
        return super().forward(query, key, value, attn_mask=future, **kwargs)


def local_mpnn(kind: str, d_model: int) -> nn.Module:
    if kind == "gcn":
        return GCNConv(d_model, d_model)
    return GINConv(nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model)))


class GraphGPS(nn.Module):
    def __init__(self, c: GraphGPSConfig, info: TaskInfo):
        super().__init__()
        self.graph = PositionGraph(info)
        self.embed = nn.Embedding(info.vocab_size, c.d_model)
        self.pe_dim = c.pe_dim
        if c.pe_dim:
            self.register_buffer("pe", laplacian_pe(info.seq_len, info.topology, c.pe_dim), persistent=False)
            self.pe_proj = nn.Linear(c.pe_dim, c.d_model)
        self.layers = nn.ModuleList()
        for _ in range(c.n_layers):
            layer = GPSConv(c.d_model, local_mpnn(c.local, c.d_model), heads=c.n_heads, dropout=c.dropout,
                            norm="layer_norm", norm_kwargs={"mode": "node"},
                            attn_kwargs={"dropout": c.attn_dropout})
            if info.causal:
                layer.attn = CausalMultiheadAttention(c.d_model, c.n_heads, dropout=c.attn_dropout, batch_first=True)
            self.layers.append(layer)
        self.readout = GraphReadout(info, c.d_model)

    def positional_encoding(self, T: int, device: torch.device) -> torch.Tensor:
        if T == self.pe.shape[0]:
            return self.pe  # (T, pe_dim)
        return laplacian_pe(T, self.graph.topology, self.pe_dim).to(device)  # shorter inputs, e.g. in tests

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        edge_index, batch = self.graph(B, T, tokens.device)  # (2, B * E), (B * T,)
        x = self.embed(tokens)  # (B, T, D)
        if self.pe_dim:
            x = x + self.pe_proj(self.positional_encoding(T, tokens.device))  # (B, T, D)
        x = x.reshape(B * T, -1)  # (B * T, D)
        for layer in self.layers:
            x = layer(x, edge_index, batch)  # (B * T, D)
        return self.readout(x, batch, tokens)


def build(config: GraphGPSConfig, info: TaskInfo) -> GraphGPS:
    return GraphGPS(config, info)
