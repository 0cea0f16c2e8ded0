"""Causal attention for TGN that can run for a subset of query positions only.

Soft (training) mode runs ordinary causal attention over every position. Hard mode gathers the
gated query positions and attends them over the keys of their whole causal prefix, so the work of
ungated positions is skipped, not masked. Each call records the work it did (``query_rows``: query
rows projected and attended; ``pairs``: the query-key scores a causal pass at those queries needs, a
query at position p scoring the p + 1 keys up to it) next to the work full causal attention does
(``full_pairs``), so callers can report the fraction of attention FLOPs spent (never above 1) and
tests can check that work scales with the number of gated positions. ``pairs`` counts what causal
attention at the gated queries needs, not what a kernel happens to score: the masked path for
scattered tokens scores a row's whole gated block against its longest prefix and masks the rest,
which counted as work read up to 1.89 of full attention on MQAR.
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

    def rows_attention(self, x: torch.Tensor, positions: list[list[torch.Tensor]]
                       ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Attention output only at selected query positions: per row ``b``, (positions, (Q, D) outputs) or None.

        ``positions[b]`` is a list of sorted 1-D index tensors for row ``b``, the groups in ascending
        order; a group's queries see the keys of positions ``0 .. group[-1]`` (their causal prefix),
        masked so that a query at position p sees keys <= p. Token-level TGN passes one group per row
        (all gated tokens); chunked TGN one group per gated chunk, so a chunk's queries score only the
        keys before its own end instead of the row's last gated position. Groups of consecutive
        positions (chunks) on the CPU go through the flash kernel (:func:`_chunk_prefix_attention`);
        others through SDPA with a mask.
        """
        B, T, D = x.shape
        self.full_pairs += B * causal_pairs(T)
        results: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for b, groups in enumerate(positions):
            groups = [g for g in groups if g.numel()]
            if not groups:
                results.append(None)
                continue
            bounds = [(int(g[0]), int(g[-1]) + 1) for g in groups]  # each group's first and one-past-last
            end = bounds[-1][1]  # keys beyond the last gated query are never needed
            k, v = (self._heads(t).contiguous() for t in self.kv(x[b, :end]).chunk(2, dim=-1))  # (nh, end, hs) each
            rows = torch.cat(groups)
            q = self._heads(self.q(x[b, rows])).contiguous()  # (nh, Q, hs): every gated query of the row
            if _CPU_FLASH is not None and x.device.type == "cpu" and all(hi - lo == len(g) for (lo, hi), g
                                                                          in zip(bounds, groups)):
                y = _chunk_prefix_attention(q, k, v, rows, bounds)  # (nh, Q, hs)
            else:
                y = torch.cat([_masked_prefix_attention(q_group, k[:, :hi], v[:, :hi], pos) for q_group, pos, (_, hi)
                               in zip(q.split([len(g) for g in groups], dim=1), groups, bounds)], dim=1)
            results.append((rows, self.out(y.transpose(0, 1).reshape(len(rows), D))))
            self.query_rows += len(rows)
            self.pairs += int((rows + 1).sum())  # each gated query's causal prefix
        return results


def _masked_prefix_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Queries at sorted positions ``pos`` over the keys ``k``/``v`` of positions ``0 .. pos[-1]``, each
    seeing keys up to its own position."""
    visible = torch.arange(k.shape[-2], device=q.device) <= pos.unsqueeze(1)  # (Q, keys): each query's prefix
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (nh, Q, hs)


# CPU's flash kernel, which also returns the log-sum-exp of each query's scores. Public SDPA with an
# explicit mask falls back to the math path (it scores and stores the whole Q x K block), which made
# a chunk's prefix attention ~4x slower per score than the flash kernel; see _chunk_prefix_attention.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _chunk_prefix_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor,
                            bounds: list[tuple[int, int]]) -> torch.Tensor:
    """Causal attention for the queries of sorted, disjoint chunks ``[lo, hi)``, concatenated in ``q``.

    ``rows`` holds the queries' positions (the chunks' positions, concatenated). A chunk's keys are its
    own (a square causal block) plus every key before ``lo``. Cut the keys at the chunk starts into
    segments: segment j (from the previous chunk's start to chunk j's) is seen, unmasked, by chunk j and
    every later chunk, whose queries are a suffix of ``q``. So one flash call per segment (queries: that
    suffix) plus one batched call per chunk size for the chunks' own blocks, merged exactly by
    log-sum-exp, computes the scores of per-chunk prefix attention in fewer, larger calls.
    """
    n_heads, n_queries, _ = q.shape
    sizes = [hi - lo for lo, hi in bounds]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]  # where each chunk's queries start in q
    parts, part_lses, starts = [], [], []  # per segment: its result over the queries q[:, start:]
    # the kernel's log-sum-exps are float32 whatever q's dtype (bf16 under autocast): keep them, and merge, so
    own, own_lse = q.new_empty(q.shape), q.new_empty(q.shape[:-1], dtype=torch.float32)  # (nh, Q, hs), (nh, Q)
    for size in sorted(set(sizes)):  # the chunks' own causal blocks: their keys sit at the queries' positions
        chosen = [i for i, s in enumerate(sizes) if s == size]
        at = torch.cat([torch.arange(offsets[i], offsets[i] + size) for i in chosen])  # indices into q
        blocks = [t[:, index].view(n_heads, len(chosen), size, -1).transpose(0, 1)  # (n, nh, size, hs)
                  for t, index in ((q, at), (k, rows[at]), (v, rows[at]))]
        local, local_lse = _CPU_FLASH(*blocks, 0.0, True)  # (n, nh, size, hs), (n, nh, size)
        own[:, at] = local.transpose(0, 1).reshape(n_heads, -1, local.shape[-1])
        own_lse[:, at] = local_lse.transpose(0, 1).reshape(n_heads, -1)
    previous = 0
    for j, (lo, _) in enumerate(bounds):
        if lo > previous:  # keys [previous, lo): seen by chunk j and all later ones
            part, part_lse = _CPU_FLASH(q[None, :, offsets[j]:], k[None, :, previous:lo], v[None, :, previous:lo],
                                        0.0, False)
            parts.append(part[0])
            part_lses.append(part_lse[0])
            starts.append(offsets[j])
        previous = lo
    # softmax over all keys = each part's softmax weighted by exp(its lse - the union's lse); a query's
    # missing parts (segments after its chunk) count as lse = -inf
    lses = q.new_full((len(parts) + 1, n_heads, n_queries), float("-inf"), dtype=torch.float32)
    lses[0] = own_lse
    for i, (start, part_lse) in enumerate(zip(starts, part_lses), 1):
        lses[i, :, start:] = part_lse
    weights = (lses - torch.logsumexp(lses, dim=0)).exp_().unsqueeze(-1)  # (parts + 1, nh, Q, 1)
    out = own.float().mul_(weights[0])
    for i, (start, part) in enumerate(zip(starts, parts), 1):
        out[:, start:].addcmul_(part.float(), weights[i, :, start:])
    return out.to(q.dtype)
