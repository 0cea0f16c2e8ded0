"""Harness overhead: training-step throughput inside ``seqbench run`` against a hand-written PyTorch loop.

Same model (transformer, built by its plugin with the same seed), same data (the task's train loader),
same optimizer (AdamW with seqbench's parameter groups, warm-up/cosine schedule and gradient
clipping), same number of steps. Both sides are timed the same way: the period from the start of one
training step to the start of the next, so everything the harness does between steps (data loading,
logging, progress bar, callbacks, the scheduler) is inside the measurement. The first ``--warmup``
steps are left out. Runs alternate (seqbench, plain, seqbench, ...) so machine noise hits both sides;
the ratio printed is median(seqbench tokens/s) / median(plain tokens/s) (target >= 0.95), where each
run's tokens/s is tokens per step over its median step period.

    python benchmarks/bench_overhead.py                      # transformer on mqar, default sizes
    python benchmarks/bench_overhead.py --rounds 5 --steps 80 --no-progress
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import build_registries
from seqbench.train.lit import build_optimizer
from seqbench.train.runner import build_data_and_model, run


class StepClock(L.Callback):
    """Start time of every training step, as seen by Lightning."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.tokens: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())
        self.tokens.append(batch[0].numel())


def step_rate(starts: list[float], tokens: list[int], warmup: int) -> tuple[float, float]:
    """(tokens/s, seconds per step): tokens per step over the median step period (start to next start),
    warm-up steps left out.

    The median rather than the mean: on a shared machine a few steps stalled by other processes
    would otherwise decide the ratio.
    """
    periods = [b - a for a, b in zip(starts[warmup:-1], starts[warmup + 1:], strict=True)]
    period = statistics.median(periods)
    return statistics.median(tokens[warmup:-1]) / period, period


def seqbench_side(registries, config, progress: bool, warmup: int, results: str) -> tuple[float, float]:
    clock = StepClock()
    run(registries, config, RunOptions(results_dir=Path(results), device="cpu", progress=progress, callbacks=(clock,)))
    return step_rate(clock.starts, clock.tokens, warmup)


def plain_side(registries, config, warmup: int) -> tuple[float, float]:
    """The loop a researcher would write by hand for the same training."""
    torch.use_deterministic_algorithms(False)  # torch's default; seqbench turns it on for its CPU runs
    data, info, module = build_data_and_model(registries, config)
    c = config.train
    optimizer, scheduler = build_optimizer(module, c)  # the same optimizer and schedule as seqbench
    module.train()
    starts, tokens, step = [], [], 0
    while step < c.max_steps:
        for batch_tokens, targets in data.train_dataloader():
            starts.append(time.perf_counter())
            tokens.append(batch_tokens.numel())
            logits = module(batch_tokens)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                   ignore_index=info.ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), c.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if step >= c.max_steps:
                break
    starts.append(time.perf_counter())  # the "start" of the step after the last one
    tokens.append(0)
    return step_rate(starts, tokens, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="transformer")
    parser.add_argument("--task", default="mqar")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, e.g. model.d_model=8 (a tiny model isolates the per-step overhead)")
    parser.add_argument("--no-progress", action="store_true", help="seqbench side without its progress bar")
    parser.add_argument("--results", default="/tmp/seqbench-overhead")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    registries = build_registries()
    # Evaluation only after the last step, outside the timed window, as in the plain loop.
    config = resolve_run_config(registries, args.model, args.task, preset=args.preset, seed=0,
                                overrides=[f"train.max_steps={args.steps}", f"train.eval_every={args.steps}",
                                           "train.eval_batches=1", "task.num_test=64", *args.set])
    harness, plain, harness_step, plain_step = [], [], [], []
    for round_index in range(args.rounds):
        rate, step = seqbench_side(registries, config, not args.no_progress, args.warmup, args.results)
        harness.append(rate)
        harness_step.append(step)
        rate, step = plain_side(registries, config, args.warmup)
        plain.append(rate)
        plain_step.append(step)
        print(f"round {round_index + 1}: seqbench {harness[-1]:,.0f} tokens/s, plain {plain[-1]:,.0f} tokens/s, "
              f"ratio {harness[-1] / plain[-1]:.3f}", flush=True)
    ratio = statistics.median(harness) / statistics.median(plain)
    print(f"{args.model} on {args.task} (preset {args.preset}, batch {config.train.batch_size}, "
          f"seq_len {getattr(config.task_config, 'seq_len', '?')}, {args.steps} steps, {args.rounds} rounds, "
          f"progress bar {'off' if args.no_progress else 'on'}, {torch.get_num_threads()} threads)")
    ours, theirs = 1000 * statistics.median(harness_step), 1000 * statistics.median(plain_step)
    print(f"median step: seqbench {ours:.1f} ms, plain {theirs:.1f} ms (harness overhead {ours - theirs:+.1f} ms "
          "per step)")
    print(f"median seqbench {statistics.median(harness):,.0f} tokens/s, median plain {statistics.median(plain):,.0f} "
          f"tokens/s, ratio seqbench/plain = {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
