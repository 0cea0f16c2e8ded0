"""Mamba-1's selective scan in plain PyTorch: a fast chunked path and a sequential reference.

Both take mamba_ssm's ``selective_scan_fn`` arguments and layouts, so the three are interchangeable::

    u, delta, z : (B, D, L)      A : (D, N)      B, C : (B, N, L)      D, delta_bias : (D,)

    delta <- softplus(delta + delta_bias)              (when delta_softplus)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      h : (B, D, N), h_{-1} = 0
    y_t    = C_t . h_t + D * u_t ;   y <- y * silu(z)

:func:`selective_scan_ref` is the loop above, written to be obviously right; tests hold the fast
path to it. :func:`selective_scan_fast` is the run-time path on CPU (and on CUDA without mamba-ssm).
Its core, :class:`_ChunkedScan`, walks time in chunks of a few steps: a chunk's decays, inputs
and states live only while that chunk is processed, so the (B, L, D, N) state tensor is never
materialised, each chunk stays in cache, and only the chunk-start states (one per chunk) are
saved for backward. The backward is derived by hand (a reverse scan per chunk, re-running the
chunk's forward from its saved start state) instead of letting autograd record 1000s of small ops.

Why not a parallel (log-depth) scan or Mamba-2's chunked matmul form: a parallel scan re-reads the
full state tensor log2(L) times, and the matmul form needs a scalar decay per head, while Mamba-1's
decay exp(delta_t * A) differs per (channel, state) pair. A sequential scan inside cache is cheaper.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

# Steps per chunk: as many as keep one (K, B, N, D) buffer near CHUNK_ELEMENTS floats (a few such buffers
# then fit in cache), at most CHUNK. Measured best on 2 cores: 32 steps at B*N*D = 8*16*128 (of 32-256),
# 4 steps at 64*16*128 (of 4-64).
CHUNK = 32
CHUNK_ELEMENTS = 1 << 19
LOG2_E = 1.4426950408889634
# Intra-op threads inside the CPU scan (None: torch's setting). The scan is hundreds of mid-size ops and
# each multi-threaded op pays a fork/join; on this project's shared 2-core machine, with other jobs
# running, a join often waits a whole time slice: one layer's forward+backward took 1.7 s with 1 thread
# in the scan vs 4.1 s with 2 (each at its best chunk length; mambapy: 6.3 s), all else at 2 threads.
# The per-step updates are below torch's parallel grain size anyway, so a quiet machine loses little.
SCAN_THREADS: int | None = 1


@contextlib.contextmanager
def _scan_context(device: torch.device):
    """Full precision throughout (autocast would run the batched matmuls in bf16/fp16), SCAN_THREADS on CPU."""
    with torch.autocast(device.type, enabled=False):
        previous = torch.get_num_threads()
        if device.type != "cpu" or SCAN_THREADS is None or SCAN_THREADS == previous:
            yield
            return
        torch.set_num_threads(SCAN_THREADS)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


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
    # Time-major copies, so one step's (B, D) or (B, N) slice is contiguous for the scan loops; at least
    # fp32, as mamba-ssm keeps its state (bf16 inputs under autocast would lose the recurrence).
    dtype = torch.promote_types(u.dtype, torch.float32)
    y = _ChunkedScan.apply(*(t.permute(2, 0, 1).to(dtype).contiguous() for t in (u, delta)), A.to(dtype),
                           *(t.permute(2, 0, 1).to(dtype).contiguous() for t in (B, C)))  # (L, B, D)
    return _finish(y.permute(1, 2, 0).to(u.dtype), u, D, z)


class _ChunkBuffers:
    """(K, B, N, D) work tensors allocated once per call and reused by every chunk (fresh multi-MB
    tensors per chunk cost page faults), with their per-step row views made once (indexing a row per
    step costs more Python time than the step's arithmetic).

    The state axis N comes before the channel axis D so the innermost loops run over D (long, contiguous)
    and the C and B contractions become row-vector-times-matrix products, which BLAS does well.
    """

    def __init__(self, like: torch.Tensor, shape: tuple[int, ...], names: tuple[str, ...]):
        self.tensors = {name: like.new_empty(shape) for name in names}
        self.rows = {name: t.unbind(0) for name, t in self.tensors.items()}

    def take(self, name: str, k: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The first ``k`` steps of a buffer, whole and as rows."""
        return self.tensors[name][:k], self.rows[name][:k]


def _chunk_states(h: torch.Tensor, delta: torch.Tensor, delta_u: torch.Tensor, A2_t: torch.Tensor,
                  B: torch.Tensor, buffers: _ChunkBuffers, k: int):
    """One chunk's decays and states, from the state ``h`` (B, N, D) before it; returns their buffers.

    delta, delta_u: (K, B, D); A2_t: (N, D), A * log2(e) (exp2 is ~3x faster than exp on CPU); B: (K, B, N).
    """
    decay, decay_rows = buffers.take("decay", k)  # (K, B, N, D)
    states, state_rows = buffers.take("states", k)  # (K, B, N, D)
    torch.exp2(torch.mul(delta[:, :, None, :], A2_t, out=decay), out=decay)  # exp(delta_t A)
    torch.mul(B[..., None], delta_u[:, :, None, :], out=states)  # the inputs, scanned in place below
    state_rows[0].addcmul_(decay_rows[0], h)
    for t in range(1, k):
        state_rows[t].addcmul_(decay_rows[t], state_rows[t - 1])
    return decay, decay_rows, states


def _sum_n(vec: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """sum_n vec[k, b, n] * states[k, b, n, d] -> (K, B, D), as one batched matmul."""
    K, batch, n, dim = states.shape
    return torch.bmm(vec.reshape(K * batch, 1, n), states.reshape(K * batch, n, dim)).view(K, batch, dim)


def _sum_d(states: torch.Tensor, vec: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """sum_d states[k, b, n, d] * vec[k, b, d] -> (K, B, N)."""
    return torch.mul(states, vec[:, :, None, :], out=scratch).sum(-1)


class _ChunkedScan(torch.autograd.Function):
    """y_t = C_t . h_t with h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t; time-major inputs.

    u, delta: (L, B, D); A: (D, N); B, C: (L, B, N) -> y: (L, B, D).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        with _scan_context(u.device):
            return _ChunkedScan._forward(ctx, u, delta, A, B, C)

    @staticmethod
    def backward(ctx, grad_y):
        with _scan_context(grad_y.device):
            return _ChunkedScan._backward(ctx, grad_y)

    @staticmethod
    def _forward(ctx, u, delta, A, B, C):
        length, batch, dim = u.shape
        A2_t = (A * LOG2_E).t().contiguous()  # (N, D)
        delta_u = delta * u  # (L, B, D)
        chunk = ctx.chunk = max(1, min(CHUNK, CHUNK_ELEMENTS // (batch * A.shape[1] * dim), length))
        buffers = _ChunkBuffers(u, (chunk, batch, A.shape[1], dim), ("decay", "states"))
        starts = u.new_empty(-(-length // chunk), batch, A.shape[1], dim)  # (chunks, B, N, D): h before each
        starts[0].zero_()
        y = torch.empty_like(u)  # (L, B, D)
        for index, lo in enumerate(range(0, length, chunk)):
            k = min(chunk, length - lo)
            _, _, states = _chunk_states(starts[index], delta[lo:lo + k], delta_u[lo:lo + k], A2_t, B[lo:lo + k],
                                         buffers, k)
            torch.bmm(C[lo:lo + k].view(k * batch, 1, -1), states.view(k * batch, -1, dim),
                      out=y[lo:lo + k].view(k * batch, 1, dim))  # y_t = C_t . h_t
            if index + 1 < starts.shape[0]:
                starts[index + 1].copy_(states[k - 1])
        ctx.save_for_backward(u, delta, A, B, C, starts)
        return y

    @staticmethod
    def _backward(ctx, grad_y):
        u, delta, A, B, C, starts = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        length = u.shape[0]
        A_t = A.t().contiguous()  # (N, D)
        A2_t = A_t * LOG2_E
        delta_u = delta * u  # (L, B, D)
        chunk = ctx.chunk
        buffers = _ChunkBuffers(u, (chunk, *starts.shape[1:]), ("decay", "states", "grad_h", "scratch"))
        grad_u, grad_delta, grad_B, grad_C = (torch.empty_like(t) for t in (u, delta, B, C))
        grad_A_t = torch.zeros_like(A_t)  # (N, D)
        carry = None  # d loss / d h_t at the last step of the previous chunk, through the next chunk's decay
        for index in reversed(range(starts.shape[0])):
            lo = index * chunk
            k = min(chunk, length - lo)
            rows = slice(lo, lo + k)
            h0 = starts[index]  # (B, N, D)
            d, gy = delta[rows], grad_y[rows]  # (K, B, D)
            decay, decay_rows, states = _chunk_states(h0, d, delta_u[rows], A2_t, B[rows], buffers, k)
            grad_h, grad_h_rows = buffers.take("grad_h", k)  # (K, B, N, D)
            scratch, _ = buffers.take("scratch", k)
            grad_C[rows] = _sum_d(states, gy, scratch)
            # grad_h[t] = C_t gy_t + decay[t+1] grad_h[t+1]: a reverse scan, in place.
            torch.mul(C[rows, :, :, None], gy[:, :, None, :], out=grad_h)
            if carry is not None:
                grad_h_rows[k - 1].add_(carry)
            for t in range(k - 2, -1, -1):
                grad_h_rows[t].addcmul_(decay_rows[t + 1], grad_h_rows[t + 1])
            carry = decay_rows[0] * grad_h_rows[0]
            # d loss / d (delta_t A) = grad_h[t] * decay[t] * h_{t-1}, written over decay's memory.
            grad_log_decay = decay.mul_(grad_h)  # (K, B, N, D)
            grad_log_decay[1:].mul_(states[:-1])
            grad_log_decay[0].mul_(h0)
            grad_A_t += torch.mul(grad_log_decay, d[:, :, None, :], out=scratch).sum((0, 1))
            grad_delta_u = _sum_n(B[rows], grad_h)  # (K, B, D): d loss / d (delta_t u_t)
            grad_delta[rows] = torch.mul(grad_log_decay, A_t, out=scratch).sum(2) + grad_delta_u * u[rows]
            grad_u[rows] = grad_delta_u * d
            grad_B[rows] = _sum_d(grad_h, delta_u[rows], scratch)
        return grad_u, grad_delta, grad_A_t.t(), grad_B, grad_C
