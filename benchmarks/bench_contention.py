"""Throughput under contention: the main job's training tokens/s alone, then beside a second copy.

Each copy is ``seqbench run --model tgn --task mqar`` (default preset, shortened by ``--max-steps``) in
its own process; tokens/s is read from its row (training batches only, seqbench.train.lit.ThroughputMeter).
The ratio per process is its tokens/s beside the other copy over the solo figure: 0.5 is a fair share
of the machine; far below means oversubscribed threads stall each other (target >= 0.4).

By default each process follows seqbench's thread policy (seqbench.train.threads: the cores it may use,
``OMP_NUM_THREADS`` unset here so the policy decides). ``--old-default`` passes torch's own default
thread count instead, for a before/after comparison.

    python benchmarks/bench_contention.py                    # policy
    python benchmarks/bench_contention.py --old-default      # torch's default thread count
    python benchmarks/bench_contention.py --max-steps 5      # check the script itself
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # the policy (or torch) decides, not the caller's shell
    return env


def torch_default_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=environment(),
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def start(results: Path, max_steps: int, threads: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "seqbench.cli", "run", "--model", "tgn", "--task", "mqar", "--no-progress",
               "--max-steps", str(max_steps), "--results", str(results),
               *(["--threads", str(threads)] if threads else [])]
    return subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, results: Path) -> dict:
    if proc.wait() != 0:
        raise SystemExit(f"seqbench run exited {proc.returncode}")
    (row,) = pq.read_table(next((results / "runs").glob("*.parquet"))).to_pylist()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300, help="training steps per copy (default 300)")
    parser.add_argument("--old-default", action="store_true", help="torch's default thread count, not the policy")
    parser.add_argument("--threads", type=int, default=None, help="an explicit --threads for both copies")
    args = parser.parse_args()
    threads = args.threads or (torch_default_threads() if args.old_default else None)
    label = f"--threads {threads}" if threads else "the thread policy"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        solo = finish(start(root / "solo", args.max_steps, threads), root / "solo")
        print(f"alone: {solo['tokens_per_sec']:,.0f} tokens/s ({solo['threads']} threads, {label})", flush=True)
        procs = [start(root / f"pair{i}", args.max_steps, threads) for i in range(2)]
        rows = [finish(proc, root / f"pair{i}") for i, proc in enumerate(procs)]
    for i, row in enumerate(rows):
        print(f"beside a second copy, process {i}: {row['tokens_per_sec']:,.0f} tokens/s "
              f"({row['threads']} threads), ratio {row['tokens_per_sec'] / solo['tokens_per_sec']:.2f} of alone")


if __name__ == "__main__":
    main()
