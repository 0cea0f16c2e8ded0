"""Inference throughput: hard-gated chunked TGN (a fixed fraction of chunks gated) vs a Transformer.

Both models have the same width, depth and heads and run a forward pass over one long sequence
(default L = 8192, batch 1) under ``torch.inference_mode``. TGN runs in hard mode with
``force_gate_rate(rate)`` (default 15% of chunks, evenly spaced), so only those chunks run global
causal attention. The two models are timed alternately (interleaved repeats, so machine noise hits
both alike) after a warm-up forward each; the report gives median tokens/s, their ratio, the median
and range of the per-repeat ratios (each taken at one machine speed), and the ratio of each model's
fastest run (on a shared machine, the run least disturbed by other load).

    python benchmarks/bench_tgn_chunked.py                  # L=8192, d=64, 2 layers, 15% of chunks
    python benchmarks/bench_tgn_chunked.py --seq-len 16384 --d-model 128 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics

import torch

from seqbench.api import TaskInfo
from seqbench.bench import force_gates, interleaved_seconds
from seqbench_plugins.tgn import TGNConfig
from seqbench_plugins.tgn import build as build_tgn
from seqbench_plugins.transformer import TransformerConfig
from seqbench_plugins.transformer import build as build_transformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument("--rate", type=float, default=0.15, help="fraction of chunks gated (hard mode)")
    parser.add_argument("--base", default="mamba", choices=["mamba", "gru"], help="TGN's inertial channel")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    info = TaskInfo(name="bench", vocab_size=64, seq_len=args.seq_len, num_classes=64, target="token", causal=True)
    tgn = build_tgn(TGNConfig(variant="chunked", d_model=args.d_model, n_layers=args.n_layers,
                              n_heads=args.n_heads, chunk_size=args.chunk_size, base=args.base), info).eval()
    force_gates(tgn, args.rate)  # hard mode, exactly this fraction of chunks gated
    transformer = build_transformer(TransformerConfig(d_model=args.d_model, n_layers=args.n_layers,
                                                      n_heads=args.n_heads), info).eval()
    tokens = torch.randint(0, 64, (args.batch, args.seq_len))
    models = {"tgn_chunked_hard": tgn, "transformer": transformer}
    with torch.inference_mode():
        out = tgn(tokens)  # the warm-up forward also tells how much attention hard mode runs
        gated = int(tgn.blocks[0].chunk_override.sum())
        n_chunks = tgn.blocks[0].chunk_override.numel()
        flop_fraction = float(out.extras["attn_flop_fraction"])
        transformer(tokens)
        times = interleaved_seconds({name: lambda model=model: model(tokens) for name, model in models.items()},
                                    warmup=0, repeats=args.repeats)

    tokens_per_forward = args.batch * args.seq_len
    rates = {name: tokens_per_forward / statistics.median(t) for name, t in times.items()}
    print(f"L={args.seq_len} batch={args.batch} d_model={args.d_model} n_layers={args.n_layers} "
          f"n_heads={args.n_heads} threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"TGN chunked (base {args.base}, chunk {args.chunk_size}): {gated}/{n_chunks} chunks gated, "
          f"attention FLOP fraction {flop_fraction:.3f}")
    for name, rate in rates.items():
        spread = ", ".join(f"{tokens_per_forward / t:,.0f}" for t in times[name])
        print(f"{name:18s} median {rate:12,.0f} tokens/s   (runs: {spread})")
    # each repeat times both models back to back, so a repeat's ratio is taken at one machine speed
    paired = sorted(b / a for a, b in zip(times["tgn_chunked_hard"], times["transformer"]))
    fastest = min(times["transformer"]) / min(times["tgn_chunked_hard"])  # each model's least-disturbed run
    print(f"ratio tgn_chunked_hard / transformer = {rates['tgn_chunked_hard'] / rates['transformer']:.2f}x "
          f"(ratio of medians); per repeat: median {statistics.median(paired):.2f}x, "
          f"range {paired[0]:.2f}-{paired[-1]:.2f}x; fastest runs: {fastest:.2f}x")


if __name__ == "__main__":
    main()
