"""Forward+backward time of one Mamba-1 layer: seqbench's CPU path vs mambapy's parallel scan.

seqbench's path is the compiled scan with its fused backward (plugins/cpu_scan.c) where a C compiler
builds it, else the chunked PyTorch scan; the first line printed names the one that ran.
``SEQBENCH_KERNELS=ref`` times the PyTorch scan instead (the before figure of issue 23).

Both layers get the same weights (the parameter names match, so mambapy's state dict loads into
ours) and the same input; their outputs are checked to agree before timing. Repeats alternate
between the two, after warm-up, and the medians are compared, so load on the machine hits both alike.
seqbench's sequential reference is timed too, at a small size only (it is ~100x slower).

    python benchmarks/bench_mamba_cpu.py                      # d_model 64, L 1024, batch 8, 7 repeats
    python benchmarks/bench_mamba_cpu.py --repeats 11 --threads 2
    SEQBENCH_KERNELS=ref python benchmarks/bench_mamba_cpu.py --threads 2   # the PyTorch scan

Needs mambapy (in the ``test`` extra). Prints both medians and mambapy / seqbench (>1: ours is faster).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from mambapy.mamba import MambaBlock as MambapyBlock
from mambapy.mamba import MambaConfig as MambapyConfig

from seqbench.bench import interleaved_seconds
from seqbench_plugins import selective_scan
from seqbench_plugins.mamba import MambaBlock


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    layer.zero_grad(set_to_none=True)
    layer(x).square().mean().backward()


def paired_layers(d_model: int, d_state: int, expand: int, d_conv: int) -> tuple[MambaBlock, MambapyBlock]:
    theirs = MambapyBlock(MambapyConfig(d_model=d_model, n_layers=1, d_state=d_state, expand_factor=expand,
                                        d_conv=d_conv, pscan=True))
    ours = MambaBlock(d_model, d_state=d_state, expand=expand, d_conv=d_conv)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, theirs = paired_layers(args.d_model, 16, 2, 4)
    x = torch.randn(args.batch, args.length, args.d_model)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    print(f"layer d_model={args.d_model} d_state=16 expand=2 d_conv=4, input {tuple(x.shape)}, "
          f"{torch.get_num_threads()} threads, our path {ours.kernel_path}, chunk {selective_scan.CHUNK} steps at most")
    print(f"outputs agree: max |ours - mambapy| / max |mambapy| = {((a - b).abs().max() / b.abs().max()):.2e}")

    times = interleaved_seconds({"seqbench": lambda: forward_backward(ours, x),
                                 "mambapy": lambda: forward_backward(theirs, x)}, args.warmup, args.repeats)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:9s} forward+backward median {median[name]:.3f} s  (runs: "
              f"{', '.join(f'{v:.3f}' for v in values)})")
    print(f"ratio mambapy / seqbench = {median['mambapy'] / median['seqbench']:.2f}x")

    scan_inputs = _scan_inputs(batch=2, dim=2 * args.d_model, length=128)
    scans = interleaved_seconds({name: lambda scan=scan: _scan_forward_backward(scan, scan_inputs) for name, scan in
                                 (("ref", selective_scan.selective_scan_ref),
                                  ("fast", selective_scan.selective_scan_fast))}, warmup=1, repeats=3)
    print(f"scan alone at batch 2, {2 * args.d_model} channels, L 128: sequential reference "
          f"{statistics.median(scans['ref']):.3f} s, seqbench fast {statistics.median(scans['fast']):.3f} s "
          "forward+backward")


def _scan_inputs(batch: int, dim: int, length: int, d_state: int = 16) -> dict[str, torch.Tensor]:
    shapes = {"u": (batch, dim, length), "delta": (batch, dim, length), "B": (batch, d_state, length),
              "C": (batch, d_state, length), "D": (dim,), "z": (batch, dim, length)}
    inputs = {name: torch.randn(shape) for name, shape in shapes.items()}
    inputs["A"] = -torch.arange(1.0, d_state + 1).repeat(dim, 1)  # (dim, N), mamba's initial A
    return {name: t.requires_grad_() for name, t in inputs.items()}


def _scan_forward_backward(scan, inputs: dict[str, torch.Tensor]) -> None:
    scan(**inputs, delta_softplus=True).square().mean().backward()


if __name__ == "__main__":
    main()
