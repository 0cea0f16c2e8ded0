"""Throughput under contention: the main job alone, beside a second copy, and beside an unrelated busy process.

Each copy is ``seqbench run --model tgn --task mqar`` (default preset, shortened by ``--max-steps``) in
its own process; tokens/s is read from its row (training batches only, seqbench.train.lit.ThroughputMeter)
and the wall time is the run's ``wall_time_s``. All cases run in the same invocation, so each ratio is to
the quiet run of the same session:

- ``pair``: two copies at once. Tokens/s per process over the solo figure: 0.5 is a fair share of the
  machine; far below means oversubscribed threads stall each other (target >= 0.4).
- ``busy``: one copy beside ``yes > /dev/null`` (a program seqbench does not know about, holding one core).
  Wall time over the quiet wall time (issue 23's target: <= 2.2x; ~9x before the policy watched /proc).

By default each process follows seqbench's thread policy (seqbench.train.threads: the cores it may use,
less those other programs keep busy, ``OMP_NUM_THREADS`` unset here so the policy decides).
``--old-default`` passes torch's own default thread count instead (an explicit ``--threads`` bypasses the
policy), for a before/after comparison.

    python benchmarks/bench_contention.py                       # policy, every case
    python benchmarks/bench_contention.py --cases busy          # quiet, then beside a busy process
    python benchmarks/bench_contention.py --old-default         # torch's default thread count
    python benchmarks/bench_contention.py --max-steps 5         # check the script itself
    python benchmarks/bench_contention.py --max-steps 0 --cases busy   # the whole main job (preset's steps)
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
               "--results", str(results), *(["--max-steps", str(max_steps)] if max_steps else []),
               *(["--threads", str(threads)] if threads else [])]
    return subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, results: Path) -> dict:
    if proc.wait() != 0:
        raise SystemExit(f"seqbench run exited {proc.returncode}")
    (row,) = pq.read_table(next((results / "runs").glob("*.parquet"))).to_pylist()
    return row


def describe(row: dict, solo: dict) -> str:
    return (f"{row['tokens_per_sec']:,.0f} tokens/s ({row['threads']} threads), wall {row['wall_time_s']:.1f} s; "
            f"tokens/s {row['tokens_per_sec'] / solo['tokens_per_sec']:.2f} of alone, "
            f"wall time {row['wall_time_s'] / solo['wall_time_s']:.2f}x alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300,
                        help="training steps per copy (default 300; 0: the preset's own)")
    parser.add_argument("--cases", default="pair,busy", help="comma-separated: pair, busy (default both)")
    parser.add_argument("--old-default", action="store_true", help="torch's default thread count, not the policy")
    parser.add_argument("--threads", type=int, default=None, help="an explicit --threads for every copy")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - {"pair", "busy"})
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from pair, busy")
    threads = args.threads or (torch_default_threads() if args.old_default else None)
    label = f"--threads {threads}" if threads else "the thread policy"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        solo = finish(start(root / "solo", args.max_steps, threads), root / "solo")
        print(f"alone: {solo['tokens_per_sec']:,.0f} tokens/s ({solo['threads']} threads, {label}), "
              f"wall {solo['wall_time_s']:.1f} s", flush=True)
        if "pair" in cases:
            procs = [start(root / f"pair{i}", args.max_steps, threads) for i in range(2)]
            for i, row in enumerate([finish(proc, root / f"pair{i}") for i, proc in enumerate(procs)]):
                print(f"beside a second copy, process {i}: {describe(row, solo)}", flush=True)
        if "busy" in cases:
            busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)  # one core held by a stranger
            try:
                row = finish(start(root / "busy", args.max_steps, threads), root / "busy")
            finally:
                busy.kill()
                busy.wait()
            print(f"beside an unrelated busy process (yes > /dev/null): {describe(row, solo)}", flush=True)


if __name__ == "__main__":
    main()
