"""Pre-LN causal Transformer decoder; attention through ``F.scaled_dot_product_attention``.

Positions (``model.positions``): ``learned`` absolute embeddings (one per position of the training
length, so the model cannot run on longer sequences), ``rope`` rotary embeddings on queries and keys
(Su et al. 2021; relative, so any length runs), or ``none`` (causal masking alone carries order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.api import TaskInfo, require
from seqbench_plugins.common import Readout, TokenEmbedding


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4  # FFN hidden width = mlp_ratio * d_model; 0: attention-only blocks (zoology's "no MLP")
    dropout: float = 0.0
    positions: Literal["learned", "rope", "none"] = "learned"  # see the module docstring
    rope_base: float = 10_000.0  # RoPE: frequencies base ** (-2i / head_dim)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.mlp_ratio >= 0, "model.mlp_ratio",
                f"must be >= 0 (0 drops the feed-forward sublayer), got {self.mlp_ratio}")
        require(self.d_model % self.n_heads == 0, "model.n_heads",
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.positions != "rope" or (self.d_model // self.n_heads) % 2 == 0, "model.positions",
                f"rope rotates pairs of channels: head width {self.d_model // self.n_heads} must be even")


def rotate(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding of (B, nh, T, hs): channel pair i of position t turns by t * base^(-2i/hs)."""
    T, hs = x.shape[-2], x.shape[-1]
    freqs = base ** (-torch.arange(0, hs, 2, device=x.device, dtype=torch.float32) / hs)  # (hs/2,)
    angles = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * freqs  # (T, hs/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, nh, T, hs/2)
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, rope_base: float | None = None):
        super().__init__()
        self.n_heads = n_heads
        self.rope_base = rope_base  # None: no rotary positions
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        if self.rope_base is not None:
            q, k = rotate(q, self.rope_base), rotate(k, self.rope_base)
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
        self.attn = CausalSelfAttention(c.d_model, c.n_heads, c.dropout,
                                        rope_base=c.rope_base if c.positions == "rope" else None)
        # mlp_ratio 0: no feed-forward sublayer at all (its norm included), as zoology's attention-only
        # MQAR baselines; an identity FFN would still add a LayerNorm's parameters and a residual
        self.norm2 = nn.LayerNorm(c.d_model) if c.mlp_ratio else None
        self.ffn = FeedForward(c.d_model, c.mlp_ratio, c.dropout) if c.mlp_ratio else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x if self.ffn is None else x + self.ffn(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, c: TransformerConfig, info: TaskInfo):
        super().__init__()
        self.embed = TokenEmbedding(info, c.d_model, positions=c.positions == "learned")
        self.trained_len = info.seq_len
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.readout = Readout(info, c.d_model)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden(tokens))

    def read_out_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The logits at ``positions`` only, ``(N, C)`` (seqbench.api.PositionReadout)."""
        return self.readout(self.hidden(tokens)[positions])

    def max_seq_len(self) -> int | None:
        """Learned positions exist only up to the training length; rope and none run at any length."""
        return self.trained_len if self.embed.positions is not None else None


def build(config: TransformerConfig, info: TaskInfo) -> Transformer:
    return Transformer(config, info)


def state_size(config: TransformerConfig, info: TaskInfo) -> int:
    """The KV cache at the task's length: keys and values, 2 * L * d per layer."""
    return config.n_layers * 2 * info.seq_len * config.d_model
