"""Mamba-1 (Gu & Dao, 2023): selective-SSM mixers in a pre-norm residual stack.

The mixer follows mamba_ssm's ``modules/mamba_simple.py``: in_proj to (x, z); causal depthwise conv
and SiLU on x; x_proj to (dt, B, C); dt_proj and softplus; the selective scan with the D skip; the
output gated by SiLU(z); out_proj. Its initialisation (dt bias, S4D-real A) is mamba_simple's too.

Kernels: mamba-ssm's ``selective_scan_fn`` (and causal-conv1d's ``causal_conv1d_fn`` when present)
run on CUDA. On the CPU, the compiled kernel of ``seqbench_plugins.cpu_scan`` runs when it builds: its
forward for passes without gradients, and for training its forward and fused backward (the causal conv
then runs in PyTorch); without a C compiler the pure-PyTorch chunked scan in
``seqbench_plugins.selective_scan`` runs. ``SEQBENCH_KERNELS`` (see seqbench.train.kernels) chooses (``ref``:
PyTorch only), and ``kernel_path`` lists every path that ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.api import TaskInfo, cpu_kernel_allowed, require, resolve_kernel
from seqbench_plugins import cpu_scan
from seqbench_plugins.common import Readout, TokenEmbedding
from seqbench_plugins.selective_scan import selective_scan_fast

try:  # CUDA-only builds: absent (or failing to import) on CPU machines, see docs/cuda.md
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:
    selective_scan_fn = None

try:
    from causal_conv1d import causal_conv1d_fn
except ImportError:
    causal_conv1d_fn = None


@dataclass(frozen=True)
class MambaConfig:
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16  # N: SSM state size per channel
    expand: int = 2  # inner width = expand * d_model
    d_conv: int = 4  # causal depthwise conv kernel width
    dt_rank: int = 0  # rank of the dt projection; 0 = auto, ceil(d_model / 16)
    dt_min: float = 0.001  # initial step sizes are log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "d_state", "expand", "d_conv"):
            require(getattr(self, name) > 0, f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        require(self.dt_rank >= 0, "model.dt_rank", f"must be >= 0 (0 = auto), got {self.dt_rank}")
        require(0 < self.dt_min <= self.dt_max, "model.dt_min",
                f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")


class MambaBlock(nn.Module):
    """The Mamba-1 mixer: (B, T, d_model) -> (B, T, d_model), causal in T."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, dt_rank: int = 0,
                 dt_min: float = 0.001, dt_max: float = 0.1):
        super().__init__()
        d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max)
        # S4D-real initialisation: A[d, n] = -(n + 1), stored as a log so A stays negative.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # (E, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        # mamba_ssm's marker, honoured by seqbench.train.lit: decaying A_log would pull every rate toward 1.
        self.A_log._no_weight_decay = True
        self.paths_run: set[str] = set()  # what kernel_path reports

    def _init_dt(self, dt_min: float, dt_max: float, dt_floor: float = 1e-4) -> None:
        """dt_proj as in mamba_simple: softplus(bias) log-uniform in [dt_min, dt_max] at the start."""
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    @property
    def kernel_path(self) -> str:
        """Every scan path this block has run, e.g. ``mamba:cpu-kernel,mamba:torch-chunked``."""
        return ",".join(sorted(self.paths_run))

    def scan_path(self, hidden: torch.Tensor) -> str:
        """"cuda" (mamba-ssm), "cpu-kernel" (compiled; its fused backward when training) or "torch" (chunked scan)."""
        if resolve_kernel("mamba", selective_scan_fn is not None, hidden.is_cuda) == "fast":
            return "cuda"
        if (hidden.device.type == "cpu" and cpu_kernel_allowed()
                and self.d_state <= cpu_scan.MAX_STATE and cpu_scan.available()):
            return "cpu-kernel"
        return "torch"

    def _needs_grad(self, hidden: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in self.parameters()))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        path = self.scan_path(hidden)
        if path == "cpu-kernel":
            return self._forward_cpu_kernel(hidden)
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, E, T) each
        if path == "cuda" and causal_conv1d_fn is not None:
            x = causal_conv1d_fn(x.contiguous(), self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        else:
            x = F.silu(self.conv1d(x)[..., :length])  # (B, E, T); the right padding is cut to stay causal
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())  # (E, N)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (B, E, T); its bias goes in as delta_bias
        B, C = B.transpose(1, 2), C.transpose(1, 2)  # (B, N, T) views: selective_scan_fast makes its own layout
        if path == "cuda":
            B, C = B.contiguous(), C.contiguous()  # mamba-ssm's kernel wants them dense
        scan = selective_scan_fn if path == "cuda" else selective_scan_fast
        y = scan(x, dt, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                 delta_softplus=True)  # (B, E, T)
        if path == "torch":
            self.paths_run.add("mamba:torch-chunked")
        else:  # without causal-conv1d, mamba-ssm's scan still runs, after a plain Conv1d
            self.paths_run.add("mamba:cuda" if causal_conv1d_fn is not None else "mamba:cuda-scan")
        return self.out_proj(y.transpose(1, 2))  # (B, T, D)

    def _forward_cpu_kernel(self, hidden: torch.Tensor) -> torch.Tensor:
        """The same computation, time-major (B, T, E) throughout; with gradients, the kernel's fused backward."""
        if self._needs_grad(hidden):  # the C conv has no backward: torch's, on the transposed view
            x, z = self.in_proj(hidden).float().chunk(2, dim=-1)  # (B, T, E) views, rows 2E apart
            x = F.silu(self.conv1d(x.transpose(1, 2))[..., :hidden.shape[1]]).transpose(1, 2)  # (B, T, E)
            scan = cpu_scan.selective_scan_cpu_train
        else:
            # x and z as two matmuls: at L = 32K one (T, 2E) output is a 32 MiB allocation, which glibc
            # always maps fresh (page faults on every call); two halves come from its heap (layer ~10% faster)
            inner = self.out_proj.in_features
            x = F.linear(hidden, self.in_proj.weight[:inner]).float()  # (B, T, E)
            z = F.linear(hidden, self.in_proj.weight[inner:]).float()  # (B, T, E)
            x = cpu_scan.causal_conv_silu(x, self.conv1d.weight.squeeze(1), self.conv1d.bias)  # (B, T, E)
            scan = cpu_scan.selective_scan_cpu
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)  # column views
        # the kernel applies dt_proj (weight and bias) and softplus itself: no (B, T, E) delta is stored
        y = scan(x, dt, -torch.exp(self.A_log.float()), B, C, self.D, z, delta_bias=self.dt_proj.bias,
                 delta_proj_weight=self.dt_proj.weight)
        self.paths_run.add("mamba:cpu-kernel")
        return self.out_proj(y.to(hidden.dtype))


class ResidualMamba(nn.Module):
    """Pre-norm residual wrapper: x + mixer(norm(x))."""

    def __init__(self, c: MambaConfig):
        super().__init__()
        self.norm = nn.LayerNorm(c.d_model)
        self.mixer = MambaBlock(c.d_model, c.d_state, c.expand, c.d_conv, c.dt_rank, c.dt_min, c.dt_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class Mamba(nn.Module):
    def __init__(self, c: MambaConfig, info: TaskInfo):
        super().__init__()
        self.embed = TokenEmbedding(info, c.d_model, positions=False)  # the scan already knows order
        self.layers = nn.ModuleList(ResidualMamba(c) for _ in range(c.n_layers))
        self.readout = Readout(info, c.d_model)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, T, D)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden(tokens))

    def read_out_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The logits at ``positions`` only, ``(N, C)`` (seqbench.api.PositionReadout)."""
        return self.readout(self.hidden(tokens)[positions])


def build(config: MambaConfig, info: TaskInfo) -> Mamba:
    # SEQBENCH_KERNELS=fast without the kernel (or without CUDA) fails here, before any training.
    resolve_kernel("mamba", selective_scan_fn is not None, torch.cuda.is_available())
    return Mamba(config, info)


def layer_state_size(d_model: int, d_state: int, expand: int, d_conv: int) -> int:
    """One mixer's recurrent state: the SSM's (expand * d, d_state) plus the causal conv's last d_conv - 1 inputs."""
    return expand * d_model * d_state + expand * d_model * (d_conv - 1)


def state_size(config: MambaConfig, info: TaskInfo) -> int:
    return config.n_layers * layer_state_size(config.d_model, config.d_state, config.expand, config.d_conv)
