"""Pre-LN causal Transformer decoder; attention through ``F.scaled_dot_product_attention``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.api import TaskInfo
from seqbench.config import require
from seqbench_plugins.common import Readout, TokenEmbedding


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4  # FFN hidden width = mlp_ratio * d_model
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "mlp_ratio"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.d_model % self.n_heads == 0, "model.n_heads",
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, mlp_ratio: int, dropout: float):
        super().__init__(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                         nn.Linear(mlp_ratio * d_model, d_model), nn.Dropout(dropout))


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.d_model)
        self.attn = CausalSelfAttention(c.d_model, c.n_heads, c.dropout)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.ffn = FeedForward(c.d_model, c.mlp_ratio, c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, c: TransformerConfig, info: TaskInfo):
        super().__init__()
        self.embed = TokenEmbedding(info, c.d_model, positions=True)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.readout = Readout(info, c.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def build(config: TransformerConfig, info: TaskInfo) -> Transformer:
    return Transformer(config, info)
