"""Thermodynamic Gated Network (TGN): an inertial recurrent channel plus causal attention, mixed by
a learned gate and trained with ``CE + lambda * mean(g)`` so that attention is used sparsely.

One block (the paper's Algorithm 1), for hidden states x (B, T, D)::

    z      = LayerNorm(x)
    h_rnn  = GRU(z)                                   inertial channel (Mamba in the chunked variant)
    h_attn = Attn(z)  [parallel]  or  Attn(h_rnn)  [serial]      geometric channel, causal
    g      = sigmoid(Gate(h_rnn))                     one value per token (per chunk when chunked)
    x'     = x + (1 - g) * h_rnn + g * h_attn
    x_next = x' + FFN(LayerNorm(x'))

Gate modes (``set_gate_mode``): "soft" mixes as above everywhere (training, and the soft test pass).
"hard" computes attention only where ``g > tau``: those positions mix exactly as in soft mode, the
others take the inertial path alone (``x' = x + h_rnn``). Attention for the gated positions is really
skipped elsewhere (queries gathered, keys/values of the causal prefix only; see tgn_attention), and
the work done is reported as ``attn_flop_fraction`` (query-key scores computed / full causal scores).

Chunked variant (paper section 6.6): the gate decides once per chunk of ``chunk_size`` tokens. To stay
causal, chunk c's gate reads the inertial state at the last token *before* the chunk (chunk 0 reads a
learned start vector): a decision taken from the past, before the chunk's tokens are seen. A gated
chunk's queries attend over all earlier keys; an ungated chunk runs no attention at all.

Hard training (``hard_train_from``, off by default): soft training lets the model lean on gates below
tau, which hard mode then cuts off. Once the loss has fallen by the given fraction (the adaptive
schedule's progress), training switches to hard mode's mix, ``h + [g > tau] g (a - h)``, with a
straight-through gradient for the step, so the gates learn which positions really need attention.

Lambda schedule (``gate_lambda``): "fixed" gives ``lambda_max`` at every step. "adaptive" follows the
task loss: with ``L0`` the first training loss and ``E_t`` an exponential moving average of the task
loss (``lambda_ema``), ``lambda_t = lambda_max * clip(1 - E_t / L0, 0, 1) ** 2``. While the loss is
near its starting value (the error-driven phase) the penalty is ~0 and the gate may open to learn;
as the task is solved ``lambda`` rises towards ``lambda_max`` (the energy-constrained phase) and
prunes the attention the task no longer needs. The square keeps the penalty negligible while the
loss has only dropped a little (e.g. ~3% of lambda_max after a 17% drop).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from seqbench.api import ModelOutput, TaskInfo, require
from seqbench_plugins.common import Readout, TokenEmbedding
from seqbench_plugins.tgn_attention import SubsetCausalAttention
from seqbench_plugins.transformer import FeedForward

# Without autograd the position-wise FFN runs over this many positions at a time: at L = 32K its
# (L, 4 d) hidden activation is 32 MiB, a fresh mmap (page faults) that falls out of cache between the
# two matmuls and GELU. Blocks of 2048 took one layer's FFN from ~81 to ~42 ms there (1 thread); the
# result is the same, row for row. (The Transformer plugin could do the same; attention is ~95% of its
# time at that length, so it would gain under 1%.)
FFN_BLOCK = 2048


@dataclass(frozen=True)
class TGNConfig:
    variant: Literal["parallel", "serial", "chunked"] = "parallel"  # set from --variant
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4  # FFN hidden width = mlp_ratio * d_model
    positions: bool = False  # learned absolute positions; off: the recurrence already gives order
    gate: Literal["linear", "mlp"] = "linear"  # Gate: Linear(D, 1), or Linear-GELU-Linear with D/4 hidden
    # The initial gate, as a logit: g starts near sigmoid(gate_bias). At 0 every gate starts at 0.5 = tau, so
    # a gate rate that peaks at the start is built in; the paper describes a low gate during incubation,
    # which e.g. -3 (g ~ 0.05) starts from. Curve claims on the gate's course depend on it: state it.
    gate_bias: float = 0.0
    tau: float = 0.5  # hard mode: attention runs where g > tau; also the gate_rate threshold
    # training switches to hard mode's mix (straight-through) once the loss has fallen this far (the adaptive
    # schedule's progress, 1 - EMA(loss) / first loss); 1 never: the paper's soft training throughout
    hard_train_from: float = 1.0
    lambda_mode: Literal["fixed", "adaptive"] = "adaptive"  # see the module docstring
    lambda_max: float = 0.02  # the paper's value
    lambda_ema: float = 0.98  # smoothing of the task loss that drives the adaptive schedule
    chunk_size: int = 128  # chunked: tokens per gate decision
    base: Literal["mamba", "gru"] = "mamba"  # chunked: the inertial channel (the paper's Mamba, or a GRU)
    d_state: int = 16  # chunked Mamba base: SSM state size
    d_conv: int = 4  # chunked Mamba base: causal conv width
    expand: int = 2  # chunked Mamba base: inner width = expand * d_model

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "mlp_ratio", "chunk_size", "d_state", "d_conv", "expand"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.d_model % self.n_heads == 0, "model.n_heads",
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        require(0 < self.tau < 1, "model.tau", f"must be in (0, 1), got {self.tau}")
        require(0 <= self.hard_train_from <= 1, "model.hard_train_from",
                f"must be in [0, 1] (1: never), got {self.hard_train_from}")
        require(self.lambda_max >= 0, "model.lambda_max", f"must be >= 0, got {self.lambda_max}")
        require(0 <= self.lambda_ema < 1, "model.lambda_ema", f"must be in [0, 1), got {self.lambda_ema}")


class GRUChannel(nn.Module):
    """nn.GRU as a (B, T, D) -> (B, T, D) mixer."""

    def __init__(self, d_model: int):
        super().__init__()
        self.rnn = nn.GRU(d_model, d_model, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.rnn(z)[0]


def inertial_channel(c: TGNConfig) -> nn.Module:
    if c.variant == "chunked" and c.base == "mamba":
        from seqbench_plugins.mamba import MambaBlock

        return MambaBlock(c.d_model, d_state=c.d_state, expand=c.expand, d_conv=c.d_conv)
    return GRUChannel(c.d_model)


class TGNBlock(nn.Module):
    def __init__(self, c: TGNConfig):
        super().__init__()
        self.c = c
        self.norm1 = nn.LayerNorm(c.d_model)
        self.inertial = inertial_channel(c)
        self.attn = SubsetCausalAttention(c.d_model, c.n_heads)
        if c.gate == "linear":
            self.gate = nn.Linear(c.d_model, 1)
        else:
            self.gate = nn.Sequential(nn.Linear(c.d_model, max(1, c.d_model // 4)), nn.GELU(),
                                      nn.Linear(max(1, c.d_model // 4), 1))
        nn.init.constant_(self.gate[-1].bias if c.gate == "mlp" else self.gate.bias, c.gate_bias)
        # chunked: what chunk 0's gate reads, since no token precedes it
        self.gate_start = nn.Parameter(torch.zeros(c.d_model)) if c.variant == "chunked" else None
        self.norm2 = nn.LayerNorm(c.d_model)
        self.ffn = FeedForward(c.d_model, c.mlp_ratio, 0.0)
        self.gate_override: float | None = None  # tests: force g to a constant
        self.chunk_override: torch.Tensor | None = None  # force_gate_rate: (n_chunks,) bool
        self.hard_mix_training = False  # set by TGN.gate_lambda once hard_train_from is reached

    def gates(self, h_rnn: torch.Tensor) -> torch.Tensor:
        """g in (0, 1): (B, T) per token, or (B, n_chunks) per chunk for the chunked variant."""
        if self.c.variant == "chunked":
            B, T, D = h_rnn.shape
            cs = self.c.chunk_size
            before_chunk = h_rnn[:, cs - 1:T - 1:cs]  # (B, n_chunks - 1, D) last token before chunks 1..
            start = self.gate_start.expand(B, 1, D)  # (B, 1, D)
            h_rnn = torch.cat([start, before_chunk], dim=1)  # (B, n_chunks, D)
        g = torch.sigmoid(self.gate(h_rnn).squeeze(-1))
        if self.gate_override is not None:
            g = torch.full_like(g, self.gate_override)
        return g

    def per_token(self, g: torch.Tensor, T: int) -> torch.Tensor:
        """(B, n) gates -> (B, T): chunk gates repeat over their chunk's tokens."""
        return g.repeat_interleave(self.c.chunk_size, dim=1)[:, :T] if self.c.variant == "chunked" else g

    def forward(self, x: torch.Tensor, hard: bool) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x.shape
        z = self.norm1(x)
        h_rnn = self.inertial(z)  # (B, T, D)
        g = self.gates(h_rnn)  # (B, T) or (B, n_chunks)
        source = h_rnn if self.c.variant == "serial" else z
        g_tok = self.per_token(g, T).unsqueeze(-1)  # (B, T, 1)
        if not hard and self.training and self.hard_mix_training:
            # hard mode's mix, h + [g > tau] g (a - h), with a straight-through gradient: the step [g > tau]
            # passes d/dg as if it were g itself, so closed gates still learn whether opening would help
            opened = (g_tok > self.c.tau).to(g_tok.dtype)
            opened = opened + g_tok - g_tok.detach()
            x = x + h_rnn + opened * g_tok * (self.attn(source) - h_rnn)
        elif not hard:
            x = x + (1 - g_tok) * h_rnn + g_tok * self.attn(source)
        else:  # the inertial path everywhere, then the gated positions' attention share: h + g (a - h)
            x = x + h_rnn
            for b, found in enumerate(self.attn.rows_attention(source, self.query_groups(g, T))):
                if found is not None:
                    rows, h_attn = found  # (Q,), (Q, D)
                    x[b, rows] += (g_tok[b, rows] * (h_attn.to(x.dtype) - h_rnn[b, rows])).to(x.dtype)
        return self.ffn_residual(x), g

    def ffn_residual(self, x: torch.Tensor) -> torch.Tensor:
        """x + FFN(LayerNorm(x)); without autograd in blocks of FFN_BLOCK positions (see FFN_BLOCK)."""
        if torch.is_grad_enabled() or x.shape[1] <= FFN_BLOCK:
            return x + self.ffn(self.norm2(x))
        out = torch.empty_like(x)  # (B, T, D)
        for start in range(0, x.shape[1], FFN_BLOCK):
            part = x[:, start:start + FFN_BLOCK]
            torch.add(part, self.ffn(self.norm2(part)), out=out[:, start:start + FFN_BLOCK])
        return out

    def query_groups(self, g: torch.Tensor, T: int) -> list[list[torch.Tensor]]:
        """Hard mode's query positions per row: all gated tokens as one group, or one group per gated chunk."""
        if self.chunk_override is not None:  # force_gate_rate: the same chunks in every row
            return [self.chunk_groups(self.chunk_override, T, g.device)] * g.shape[0]
        on = g > self.c.tau
        if self.c.variant != "chunked":
            return [[row.nonzero().squeeze(1)] for row in on]
        return [self.chunk_groups(row, T, g.device) for row in on]

    def chunk_groups(self, on: torch.Tensor, T: int, device: torch.device) -> list[torch.Tensor]:
        """(n_chunks,) bool -> the positions of each gated chunk, one tensor per chunk."""
        cs = self.c.chunk_size
        return [torch.arange(i * cs, min((i + 1) * cs, T), device=device) for i in on.nonzero().squeeze(1).tolist()]


class TGN(nn.Module):
    def __init__(self, c: TGNConfig, info: TaskInfo):
        super().__init__()
        self.c = c
        self.embed = TokenEmbedding(info, c.d_model, positions=c.positions)
        self.blocks = nn.ModuleList(TGNBlock(c) for _ in range(c.n_layers))
        self.readout = Readout(info, c.d_model)
        self.gate_threshold = c.tau
        self.gate_mode: Literal["soft", "hard"] = "soft"
        self._loss_start: float | None = None
        self._loss_ema: float | None = None
        self._forced_rate: float | None = None  # force_gate_rate's p

    def max_seq_len(self) -> int | None:
        """Learned positions (model.positions=true) exist only up to the training length."""
        return self.embed.positions.num_embeddings if self.embed.positions is not None else None

    def set_gate_mode(self, mode: Literal["soft", "hard"]) -> None:
        """"soft": mix attention everywhere by g. "hard": attention only where g > tau (compute skipped)."""
        if mode not in ("soft", "hard"):
            raise ValueError(f"gate mode must be 'soft' or 'hard', got {mode!r}")
        self.gate_mode = mode

    def force_gate_rate(self, p: float | None) -> None:
        """Chunked variant, hard mode: gate exactly ``round(p * n_chunks)`` chunks, whatever g says.

        For throughput measurements before (or regardless of) training. The chunks are evenly spaced
        over the sequence: chunk ``floor((i + 0.5) * n_chunks / k)`` for i in 0..k-1, the same for every
        row and layer, so prefix lengths (hence attention cost) are those of a typical spread of gated
        chunks. The chunk count comes from the next forward's length; ``None`` restores the learned gate.
        """
        if self.c.variant != "chunked":
            raise ValueError("force_gate_rate applies to the chunked variant (its gate decides per chunk)")
        if p is not None and not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self._forced_rate = p
        for block in self.blocks:
            block.chunk_override = None

    def _apply_forced_rate(self, T: int) -> None:
        p = self._forced_rate
        if p is None:
            return
        n = math.ceil(T / self.c.chunk_size)
        k = round(p * n)
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[[math.floor((i + 0.5) * n / k) for i in range(k)]] = True
        for block in self.blocks:
            block.chunk_override = chosen

    def probe_layers(self) -> list[nn.Module]:
        """Modules whose outputs (hidden states) the effective-rank probe reads, one per layer."""
        return list(self.blocks)

    def hidden(self, tokens: torch.Tensor) -> ModelOutput:
        """The last block's hidden states ``(B, T, D)`` in ``logits``' place, with the gates and extras."""
        hard = self.gate_mode == "hard"
        if hard:
            self._apply_forced_rate(tokens.shape[1])
        x = self.embed(tokens)  # (B, T, D)
        gates = []
        for block in self.blocks:
            block.attn.reset_counters()
            x, g = block(x, hard)
            gates.append(g)
        spent = sum(b.attn.pairs for b in self.blocks)
        full = sum(b.attn.full_pairs for b in self.blocks)
        extras = {"attn_flop_fraction": torch.tensor(spent / full)}
        return ModelOutput(x, gates=torch.stack(gates), extras=extras)  # gates: (n_layers, B, n)

    def forward(self, tokens: torch.Tensor) -> ModelOutput:
        out = self.hidden(tokens)
        return dataclasses.replace(out, logits=self.readout(out.logits))

    def read_out_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> ModelOutput:
        """The logits at ``positions`` only, ``(N, C)``, with every gate (seqbench.api.PositionReadout)."""
        out = self.hidden(tokens)
        return dataclasses.replace(out, logits=self.readout(out.logits[positions]))

    def get_extra_state(self) -> dict:
        """The adaptive lambda schedule's memory, so a checkpoint resumes it exactly (it is not a tensor)."""
        return {"loss_start": self._loss_start, "loss_ema": self._loss_ema,
                "hard_mix_training": [block.hard_mix_training for block in self.blocks]}

    def set_extra_state(self, state: dict) -> None:
        self._loss_start, self._loss_ema = state["loss_start"], state["loss_ema"]
        for block, hard in zip(self.blocks, state["hard_mix_training"]):
            block.hard_mix_training = hard

    def gate_lambda(self, step: int, task_loss: torch.Tensor) -> float:
        """The penalty weight for this training step (see the module docstring for the schedule)."""
        loss = float(task_loss)
        if self._loss_start is None:
            self._loss_start = self._loss_ema = loss
        self._loss_ema = self.c.lambda_ema * self._loss_ema + (1 - self.c.lambda_ema) * loss
        progress = min(1.0, max(0.0, 1.0 - self._loss_ema / self._loss_start)) if self._loss_start > 0 else 1.0
        if self.c.hard_train_from < 1 and progress >= self.c.hard_train_from:
            for block in self.blocks:
                block.hard_mix_training = True
        return self.c.lambda_max * progress ** 2 if self.c.lambda_mode == "adaptive" else self.c.lambda_max


def build(config: TGNConfig, info: TaskInfo) -> TGN:
    return TGN(config, info)


def state_size(config: TGNConfig, info: TaskInfo) -> int:
    """Both channels per layer: the inertial state (GRU: d; Mamba: SSM + conv window) and attention's KV cache."""
    from seqbench_plugins.mamba import layer_state_size

    if config.variant == "chunked" and config.base == "mamba":
        inertial = layer_state_size(config.d_model, config.d_state, config.expand, config.d_conv)
    else:
        inertial = config.d_model
    return config.n_layers * (inertial + 2 * info.seq_len * config.d_model)
