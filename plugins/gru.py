"""Stacked GRU (cuDNN on GPU, the fused ATen kernel on CPU): the pure-RNN baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqbench.api import TaskInfo, require
from seqbench_plugins.common import Readout, TokenEmbedding


@dataclass(frozen=True)
class GRUConfig:
    d_model: int = 64
    n_layers: int = 2
    dropout: float = 0.0  # between GRU layers

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")


class GRU(nn.Module):
    def __init__(self, c: GRUConfig, info: TaskInfo):
        super().__init__()
        self.embed = TokenEmbedding(info, c.d_model, positions=False)  # recurrence already knows order
        self.rnn = nn.GRU(c.d_model, c.d_model, num_layers=c.n_layers, batch_first=True,
                          dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.readout = Readout(info, c.d_model)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.embed(tokens))[0]  # (B, T, D)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden(tokens))

    def read_out_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The logits at ``positions`` only, ``(N, C)`` (seqbench.api.PositionReadout)."""
        return self.readout(self.hidden(tokens)[positions])


def build(config: GRUConfig, info: TaskInfo) -> GRU:
    return GRU(config, info)


def state_size(config: GRUConfig, info: TaskInfo) -> int:
    """One hidden vector of d per layer."""
    return config.n_layers * config.d_model
