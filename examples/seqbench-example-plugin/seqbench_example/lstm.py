"""A stacked LSTM: config dataclass, the nn.Module, and the build() the registry points at."""

from dataclasses import dataclass

import torch
from torch import nn

from seqbench.api import TaskInfo, require


@dataclass(frozen=True)
class LSTMConfig:
    d_model: int = 64
    n_layers: int = 2

    def __post_init__(self) -> None:
        require(self.d_model > 0, "model.d_model", f"must be > 0, got {self.d_model}")
        require(self.n_layers > 0, "model.n_layers", f"must be > 0, got {self.n_layers}")


class LSTM(nn.Module):
    def __init__(self, c: LSTMConfig, info: TaskInfo):
        super().__init__()
        self.per_token = info.target == "token"
        self.embed = nn.Embedding(info.vocab_size, c.d_model)
        self.rnn = nn.LSTM(c.d_model, c.d_model, num_layers=c.n_layers, batch_first=True)
        self.head = nn.Linear(c.d_model, info.num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embed(tokens))  # (B, T, D)
        return self.head(hidden if self.per_token else hidden[:, -1])


def build(config: LSTMConfig, info: TaskInfo) -> LSTM:
    return LSTM(config, info)
