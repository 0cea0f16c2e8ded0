"""Causal attention for TGN that can run for a subset of query positions only.

Soft (training) mode runs ordinary causal attention over every position. Hard mode gathers the
gated query positions and attends them over the keys of their whole causal prefix, so the work of
ungated positions is skipped, not masked. Each call records the work it actually did
(``query_rows``: query rows projected and attended; ``pairs``: query-key scores computed) next to the
work full causal attention would have done (``full_pairs``), so callers can report the fraction of
attention FLOPs spent and tests can check that work scales with the number of gated positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def causal_pairs(T: int) -> int:
    """Query-key scores of full causal attention over T positions (the causal kernel skips the rest)."""
    return T * (T + 1) // 2


class SubsetCausalAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)  # separate from q so hard mode projects only gated queries
        self.out = nn.Linear(d_model, d_model)
        self.reset_counters()

    def reset_counters(self) -> None:
        self.query_rows = 0
        self.pairs = 0
        self.full_pairs = 0

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        *lead, T, D = x.shape
        return x.view(*lead, T, self.n_heads, D // self.n_heads).transpose(-3, -2)  # (..., nh, T, hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full causal attention: (B, T, D) -> (B, T, D)."""
        B, T, D = x.shape
        q = self._heads(self.q(x))  # (B, nh, T, hs)
        k, v = (self._heads(t) for t in self.kv(x).chunk(2, dim=-1))  # (B, nh, T, hs) each
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        self.query_rows += B * T
        self.pairs += B * causal_pairs(T)
        self.full_pairs += B * causal_pairs(T)
        return self.out(y.transpose(1, 2).reshape(B, T, D))

    def at_positions(self, x: torch.Tensor, positions: list[list[torch.Tensor]]) -> torch.Tensor:
        """Attention output only at selected query positions; zeros elsewhere.

        ``positions[b]`` is a list of sorted 1-D index tensors for row ``b``; each group is one SDPA
        call whose queries see the keys of positions ``0 .. group[-1]`` (their causal prefix), masked
        so that a query at position p sees keys <= p. Token-level TGN passes one group per row (all
        gated tokens); chunked TGN one group per gated chunk, so a chunk's queries score only the
        keys before its own end instead of the row's last gated position.
        """
        B, T, D = x.shape
        out = x.new_zeros(B, T, D)  # under autocast the projections may return another dtype: cast on write
        self.full_pairs += B * causal_pairs(T)
        for b, groups in enumerate(positions):
            groups = [g for g in groups if g.numel()]
            if not groups:
                continue
            end = int(groups[-1][-1]) + 1  # keys beyond the last gated query are never needed
            k, v = (self._heads(t) for t in self.kv(x[b, :end]).chunk(2, dim=-1))  # (nh, end, hs) each
            for pos in groups:
                stop = int(pos[-1]) + 1
                q = self._heads(self.q(x[b, pos]))  # (nh, Q, hs)
                if _CPU_FLASH is not None and x.device.type == "cpu" and stop - int(pos[0]) == len(pos):
                    y = _contiguous_block_attention(q, k[:, :stop], v[:, :stop])  # (nh, Q, hs)
                else:
                    visible = torch.arange(stop, device=x.device) <= pos.unsqueeze(1)  # (Q, stop) causal prefix
                    y = F.scaled_dot_product_attention(q, k[:, :stop], v[:, :stop], attn_mask=visible)  # (nh, Q, hs)
                out[b, pos] = self.out(y.transpose(0, 1).reshape(len(pos), D)).to(out.dtype)
                self.query_rows += len(pos)
                self.pairs += len(pos) * stop
        return out


# CPU's flash kernel, which also returns the log-sum-exp of each query's scores. Public SDPA with an
# explicit mask falls back to the math path (it scores and stores the whole Q x K block), which made
# a chunk's prefix attention ~4x slower per score than the flash kernel; see _contiguous_block_attention.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _contiguous_block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Queries at the last Q positions of k/v (a chunk), each seeing keys up to its own position.

    Split into the keys before the chunk (no mask: every query sees them all) and the chunk's own keys
    (a square causal block), both through the flash kernel, then merged exactly with their
    log-sum-exps: softmax over the union = the two partial softmaxes reweighted by exp(lse_i - lse).
    """
    Q = q.shape[-2]
    local, lse_local = _CPU_FLASH(q.unsqueeze(0), k[None, :, -Q:], v[None, :, -Q:], 0.0, True)  # (1, nh, Q, hs)
    if k.shape[-2] == Q:
        return local[0]
    prefix, lse_prefix = _CPU_FLASH(q.unsqueeze(0), k[None, :, :-Q], v[None, :, :-Q], 0.0, False)
    lse = torch.logaddexp(lse_local, lse_prefix)  # (1, nh, Q)
    merged = (lse_local - lse).exp().unsqueeze(-1) * local + (lse_prefix - lse).exp().unsqueeze(-1) * prefix
    return merged[0]
