"""Mamba-1's selective scan in plain PyTorch: a fast chunked path and a sequential reference.

Both take mamba_ssm's ``selective_scan_fn`` arguments and layouts, so the three are interchangeable::

    u, delta, z : (B, D, L)      A : (D, N)      B, C : (B, N, L)      D, delta_bias : (D,)

    delta <- softplus(delta + delta_bias)              (when delta_softplus)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      h : (B, D, N), h_{-1} = 0
    y_t    = C_t . h_t + D * u_t ;   y <- y * silu(z)

:func:`selective_scan_ref` is the loop above, written to be obviously right; tests hold the fast
path to it. :func:`selective_scan_fast` is the run-time path on CPU (and on CUDA without mamba-ssm).
Its core, :class:`_ChunkedScan`, walks time in chunks of ``CHUNK`` steps: a chunk's decays, inputs
and states live only while that chunk is processed, so the (B, L, D, N) state tensor is never
materialised, each chunk stays in cache, and only the chunk-start states (L / CHUNK of them) are
saved for backward. The backward is derived by hand (a reverse scan per chunk, re-running the
chunk's forward from its saved start state) instead of letting autograd record 1000s of small ops.

Why not a parallel (log-depth) scan or Mamba-2's chunked matmul form: a parallel scan re-reads the
full state tensor log2(L) times, and the matmul form needs a scalar decay per head, while Mamba-1's
decay exp(delta_t * A) differs per (channel, state) pair. A sequential scan inside cache is cheaper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 64  # time steps per chunk: (CHUNK, B, D, N) floats should fit in cache; measured best of 32-128
LOG2_E = 1.4426950408889634


def _prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]  # (B, D, L)
    return F.softplus(delta) if delta_softplus else delta


def _finish(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    if D is not None:
        y = y + u * D[:, None]  # (B, D, L)
    return y * F.silu(z) if z is not None else y


def selective_scan_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """The recurrence one step at a time (autograd does the backward). Slow: for tests and checks."""
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])  # (B, D, N)
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (B, D, N)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]  # (B, D, N)
        ys.append((h * C[:, None, :, t]).sum(-1))  # (B, D)
    return _finish(torch.stack(ys, dim=-1), u, D, z)


def selective_scan_fast(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                        D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                        delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """Same result as :func:`selective_scan_ref`, chunked with a hand-written backward (see module doc)."""
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    # Time-major copies, so one step's (B, D) or (B, N) slice is contiguous for the scan loops.
    y = _ChunkedScan.apply(*(t.permute(2, 0, 1).contiguous() for t in (u, delta)), A,
                           *(t.permute(2, 0, 1).contiguous() for t in (B, C)))  # (L, B, D)
    return _finish(y.permute(1, 2, 0), u, D, z)


def _chunk_states(h: torch.Tensor, delta: torch.Tensor, delta_u: torch.Tensor, A2_t: torch.Tensor,
                  B: torch.Tensor, decay: torch.Tensor, states: torch.Tensor) -> None:
    """Fill one chunk's ``decay`` and ``states`` (K, B, N, D) buffers from the state ``h`` (B, N, D) before it.

    delta, delta_u: (K, B, D); A2_t: (N, D), A * log2(e) (exp2 is ~3x faster than exp on CPU); B: (K, B, N).
    The state axis N comes before the channel axis D so the innermost loops run over D (long, contiguous)
    and the C and B contractions become row-vector-times-matrix products, which BLAS does well.
    """
    torch.exp2(torch.mul(delta[:, :, None, :], A2_t, out=decay), out=decay)  # exp(delta_t A)
    torch.mul(B[..., None], delta_u[:, :, None, :], out=states)  # the inputs, scanned in place below
    states[0].addcmul_(decay[0], h)
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])


def _sum_n(vec: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """sum_n vec[k, b, n] * states[k, b, n, d] -> (K, B, D), as one batched matmul."""
    K, batch, n, dim = states.shape
    return torch.bmm(vec.reshape(K * batch, 1, n), states.reshape(K * batch, n, dim)).view(K, batch, dim)


def _sum_d(states: torch.Tensor, vec: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """sum_d states[k, b, n, d] * vec[k, b, d] -> (K, B, N)."""
    return torch.mul(states, vec[:, :, None, :], out=scratch).sum(-1)


class _ChunkedScan(torch.autograd.Function):
    """y_t = C_t . h_t with h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t; time-major inputs.

    u, delta: (L, B, D); A: (D, N); B, C: (L, B, N) -> y: (L, B, D). Chunk buffers are allocated once
    and reused: fresh multi-MB tensors per chunk would cost page faults on every chunk.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        length, batch, dim = u.shape
        A2_t = (A * LOG2_E).t().contiguous()  # (N, D)
        delta_u = delta * u  # (L, B, D)
        decay = u.new_empty(min(CHUNK, length), batch, A.shape[1], dim)  # (K, B, N, D)
        states = torch.empty_like(decay)
        h = u.new_zeros(batch, A.shape[1], dim)  # (B, N, D)
        starts, ys = [], []
        for lo in range(0, length, CHUNK):
            k = min(CHUNK, length - lo)
            starts.append(h)
            _chunk_states(h, delta[lo:lo + k], delta_u[lo:lo + k], A2_t, B[lo:lo + k], decay[:k], states[:k])
            ys.append(_sum_n(C[lo:lo + k], states[:k]))  # (K, B, D)
            h = states[k - 1].clone()
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts))
        return torch.cat(ys)

    @staticmethod
    def backward(ctx, grad_y):
        u, delta, A, B, C, starts = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        length = u.shape[0]
        A_t = A.t().contiguous()  # (N, D)
        A2_t = A_t * LOG2_E
        delta_u = delta * u  # (L, B, D)
        decay = u.new_empty(min(CHUNK, length), *starts.shape[1:])  # (K, B, N, D)
        states, grad_h, scratch = torch.empty_like(decay), torch.empty_like(decay), torch.empty_like(decay)
        grad_u, grad_delta, grad_B, grad_C = (torch.empty_like(t) for t in (u, delta, B, C))
        grad_A_t = torch.zeros_like(A_t)  # (N, D)
        carry = None  # d loss / d h_t at the last step of the previous chunk, through the next chunk's decay
        for index in reversed(range(starts.shape[0])):
            lo = index * CHUNK
            k = min(CHUNK, length - lo)
            rows = slice(lo, lo + k)
            dec, st, gh, tmp = decay[:k], states[:k], grad_h[:k], scratch[:k]
            h0 = starts[index]  # (B, N, D)
            d, gy = delta[rows], grad_y[rows]  # (K, B, D)
            _chunk_states(h0, d, delta_u[rows], A2_t, B[rows], dec, st)
            grad_C[rows] = _sum_d(st, gy, tmp)
            # grad_h[t] = C_t gy_t + decay[t+1] grad_h[t+1]: a reverse scan, in place.
            torch.mul(C[rows, :, :, None], gy[:, :, None, :], out=gh)
            if carry is not None:
                gh[-1] += carry
            for t in range(k - 2, -1, -1):
                gh[t].addcmul_(dec[t + 1], gh[t + 1])
            carry = dec[0] * gh[0]
            # d loss / d (delta_t A) = grad_h[t] * decay[t] * h_{t-1}, written over decay's memory.
            grad_log_decay = dec.mul_(gh)  # (K, B, N, D)
            grad_log_decay[1:].mul_(st[:-1])
            grad_log_decay[0].mul_(h0)
            grad_A_t += torch.mul(grad_log_decay, d[:, :, None, :], out=tmp).sum((0, 1))
            grad_delta_u = _sum_n(B[rows], gh)  # (K, B, D): d loss / d (delta_t u_t)
            grad_delta[rows] = torch.mul(grad_log_decay, A_t, out=tmp).sum(2) + grad_delta_u * u[rows]
            grad_u[rows] = grad_delta_u * d
            grad_B[rows] = _sum_d(gh, delta_u[rows], tmp)
        return grad_u, grad_delta, grad_A_t.t(), grad_B, grad_C
