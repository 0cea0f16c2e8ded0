"""GraphGPS (Rampasek et al.): local message passing plus global attention, from torch_geometric.

Each layer is PyG's ``GPSConv``: a local MPNN (``GINConv`` by default, or ``GCNConv``) and multi-head
attention over all nodes of the graph, summed, then an MLP. Node features are the token embedding
concatenated with a Laplacian eigenvector positional encoding in channels of its own (GraphGPS's
LapPE; without one a 1-layer model could not tell where on a ring its attention looked), built as
PyG's ``examples/graph_gps.py`` and GraphGPS's ``LapPENodeEncoder`` build it: the raw eigenvectors
are batch-normalised, each eigenvector's sign is flipped at random in training (an eigenvector's
sign is arbitrary, so the model must not depend on it), and a linear map takes them to
``pe_channels`` of the ``d_model`` channels; the token embedding fills the rest. Added instead of
concatenated, unnormalised, the encoding's signal shrinks as 1/sqrt(N) (unit-norm eigenvectors: rms
0.057 at N = 100 against a token embedding of ~1).

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
    pe_channels: int = 8  # of d_model, the channels the encoding gets (PyG's example: 8 of 64)
    dropout: float = 0.0  # GPSConv's dropout on the MPNN, attention and MLP outputs
    attn_dropout: float = 0.0  # dropout on attention weights

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.d_model % self.n_heads == 0, "model.n_heads",
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        require(self.pe_dim >= 0, "model.pe_dim", f"must be >= 0, got {self.pe_dim}")
        require(self.pe_dim == 0 or 0 < self.pe_channels < self.d_model, "model.pe_channels",
                f"must be in [1, d_model) = [1, {self.d_model}) so tokens keep channels of their own, "
                f"got {self.pe_channels}")
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
        self.pe_dim = c.pe_dim
        self.embed = nn.Embedding(info.vocab_size, c.d_model - c.pe_channels if c.pe_dim else c.d_model)
        if c.pe_dim:
            self.register_buffer("pe", laplacian_pe(info.seq_len, info.topology, c.pe_dim), persistent=False)
            # over the batch's nodes: the encoding depends on the graph's shape only, so this norm mixes
            # no token information across positions (causal tasks stay causal)
            self.pe_norm = nn.BatchNorm1d(c.pe_dim)
            self.pe_proj = nn.Linear(c.pe_dim, c.pe_channels)
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

    def encoded_positions(self, B: int, T: int, device: torch.device) -> torch.Tensor:
        """``(B * T, pe_channels)``: the normalised, (in training) sign-flipped, projected encoding."""
        pe = self.positional_encoding(T, device)  # (T, pe_dim)
        if self.training:
            # GraphGPS's LapPENodeEncoder: one random sign per eigenvector per batch
            signs = torch.randint(0, 2, (self.pe_dim,), device=device).to(pe.dtype) * 2 - 1  # (pe_dim,)
            pe = pe * signs
        pe = self.pe_norm(pe.repeat(B, 1))  # (B * T, pe_dim)
        return self.pe_proj(pe)  # (B * T, pe_channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        edge_index, batch = self.graph(B, T, tokens.device)  # (2, B * E), (B * T,)
        x = self.embed(tokens).reshape(B * T, -1)  # (B * T, D - pe_channels)
        if self.pe_dim:
            x = torch.cat([x, self.encoded_positions(B, T, tokens.device)], dim=-1)  # (B * T, D)
        for layer in self.layers:
            x = layer(x, edge_index, batch)  # (B * T, D)
        return self.readout(x, batch, tokens)


def build(config: GraphGPSConfig, info: TaskInfo) -> GraphGPS:
    return GraphGPS(config, info)
