"""Pieces every built-in sequence model shares: token embedding in, task-shaped logits out."""

from __future__ import annotations

import torch
from torch import nn

from seqbench.api import TaskInfo


class TokenEmbedding(nn.Module):
    """Token embedding plus an optional learned absolute position embedding."""

    def __init__(self, info: TaskInfo, d_model: int, positions: bool):
        super().__init__()
        self.tokens = nn.Embedding(info.vocab_size, d_model)
        self.positions = nn.Embedding(info.seq_len, d_model) if positions else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens)  # (B, T, D)
        if self.positions is not None:
            x = x + self.positions.weight[: tokens.shape[1]]
        return x


class Readout(nn.Module):
    """Final LayerNorm and a linear head, shaped by the task's target.

    Token targets get logits at every position of ``(B, T, D)`` hidden states, or at the positions
    already picked out of them (``(N, D)``: a model's ``read_out_at``, seqbench.api.PositionReadout);
    sequence targets read the last position, which is the end of the input because variable-length
    inputs are left-padded (see seqbench.api).
    """

    def __init__(self, info: TaskInfo, d_model: int):
        super().__init__()
        self.per_token = info.target == "token"
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, info.num_classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.per_token:
            hidden = hidden[:, -1]  # (B, D)
        return self.head(self.norm(hidden))
