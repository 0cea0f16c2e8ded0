"""What graph models share: the graph over a batch's positions, positional encodings, and readout.

Every seqbench batch is ``tokens (B, T)``; a graph model sees each row as a graph whose nodes are the
T positions and whose edges follow ``TaskInfo.topology``:

- ``"chain"``: position i is linked to i + 1 (a sequence seen as a path graph). On causal tasks the
  edges point only from earlier to later positions, so with PyG's source-to-target message flow no
  node ever receives a message from its future.
- ``"ring"``: the chain plus the wrap-around edge between the last and the first node, both ways.

The graph is the same for every row, so the batched ``edge_index`` (PyG's disjoint union: row b's
nodes are numbered ``b * T .. b * T + T - 1``) is built once per (B, T, device) and cached.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import global_max_pool, global_mean_pool
from torch_geometric.transforms import AddLaplacianEigenvectorPE

from seqbench.api import TaskInfo


def position_edges(num_nodes: int, topology: str, causal: bool) -> torch.Tensor:
    """``(2, E)`` edge_index (source, target) of one graph over ``num_nodes`` positions."""
    if topology == "ring" and causal:
        raise ValueError("a causal task cannot use the ring topology: the wrap-around edge brings the last "
                         "token to the first position; declare topology='chain' for causal tasks")
    if topology not in ("chain", "ring"):
        raise ValueError(f"unknown topology {topology!r}: expected 'chain' or 'ring'")
    src = torch.arange(num_nodes - 1)
    dst = src + 1
    if topology == "ring" and num_nodes > 2:  # with 2 nodes the wrap edge would duplicate 0 -> 1
        src = torch.cat([src, torch.tensor([num_nodes - 1])])
        dst = torch.cat([dst, torch.tensor([0])])
    if not causal:
        src, dst = torch.cat([src, dst]), torch.cat([dst, src])
    return torch.stack([src, dst])  # (2, E)


class PositionGraph(nn.Module):
    """Batched ``edge_index`` and ``batch`` vector for ``B`` graphs of ``T`` positions, cached.

    Not buffers: they are a pure function of (B, T, device) and must not land in a state dict.
    """

    def __init__(self, info: TaskInfo):
        super().__init__()
        self.topology = info.topology
        self.causal = info.causal
        position_edges(2, self.topology, self.causal)  # fail at build time on an impossible topology
        self._cache: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, batch_size: int, num_nodes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (batch_size, num_nodes, device)
        if key not in self._cache:
            edges = position_edges(num_nodes, self.topology, self.causal).to(device)  # (2, E)
            offsets = torch.arange(batch_size, device=device).view(batch_size, 1, 1) * num_nodes  # (B, 1, 1)
            edge_index = (edges.unsqueeze(0) + offsets).permute(1, 0, 2).reshape(2, -1)  # (2, B * E)
            batch = torch.arange(batch_size, device=device).repeat_interleave(num_nodes)  # (B * T,)
            self._cache[key] = (edge_index, batch)
        return self._cache[key]


def laplacian_pe(num_nodes: int, topology: str, k: int) -> torch.Tensor:
    """``(num_nodes, k)`` Laplacian eigenvector positional encoding of the undirected position graph.

    The encoding depends on the graph's shape only, never on token values, so it leaks nothing on
    causal tasks. Graphs with fewer than ``k + 2`` nodes get fewer eigenvectors (PyG's sparse solver
    needs ``k + 1 < num_nodes``); the missing columns are zeros.
    """
    usable = min(k, num_nodes - 2)  # PyG's sparse solver needs k + 1 < num_nodes
    pe = torch.zeros(num_nodes, k)
    if usable > 0:
        graph = Data(edge_index=position_edges(num_nodes, topology, causal=False), num_nodes=num_nodes)
        # A fixed start vector for the sparse solver (graphs of >= 100 nodes): ARPACK's own random start
        # changes from call to call, and on a ring each eigenvalue has two eigenvectors, so the basis
        # it returns would too. PyG's random sign flip draws from torch's seeded generator.
        start = np.random.default_rng(0).random(num_nodes)
        data = AddLaplacianEigenvectorPE(usable, attr_name="pe", is_undirected=True, v0=start)(graph)
        pe[:, :usable] = data.pe.float()
    return pe


class GraphReadout(nn.Module):
    """Node features ``(B * T, D)`` -> task-shaped logits.

    Token targets: one output per node, ``(B, T, C)``. Sequence targets: a graph-level output from the
    mean and the max of the node features over each graph's non-padding nodes, ``(B, C)``.
    """

    def __init__(self, info: TaskInfo, d_model: int):
        super().__init__()
        self.per_token = info.target == "token"
        self.pad_id = info.pad_id
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model if self.per_token else 2 * d_model, info.num_classes)

    def forward(self, x: torch.Tensor, batch: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        x = self.norm(x)  # (B * T, D)
        if self.per_token:
            return self.head(x).view(B, T, -1)  # (B, T, C)
        if self.pad_id is not None:
            keep = tokens.reshape(-1) != self.pad_id  # (B * T,)
            x, batch = x[keep], batch[keep]
        pooled = torch.cat([global_mean_pool(x, batch, size=B), global_max_pool(x, batch, size=B)], dim=-1)  # (B, 2D)
        return self.head(pooled)  # (B, C)
