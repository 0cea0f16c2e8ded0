"""The README's main job, end to end: ``seqbench run --model tgn --task mqar`` (default preset).

Runs it as a user would (a fresh process each time, so start-up, data, training, validation and both
test passes are inside the wall time) and reads the run's row back for its accuracy. Target: <= 60 s
of wall time on a quiet 2-core CPU with test accuracy >= 0.90. Timings on a loaded machine are not
figures: run it on a quiet one.

    python benchmarks/bench_main_job.py                  # 3 runs, the median wall time
    python benchmarks/bench_main_job.py --repeats 1 --max-steps 20   # check the script itself
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def main_job(results: Path, max_steps: int | None, extra: list[str]) -> tuple[float, dict]:
    """Wall time of one ``seqbench run`` process and the row it wrote."""
    command = [sys.executable, "-m", "seqbench.cli", "run", "--model", "tgn", "--task", "mqar", "--no-progress",
               "--results", str(results), *(["--max-steps", str(max_steps)] if max_steps else []), *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (row,) = pq.read_table(next((results / "runs").glob("*.parquet"))).to_pylist()
    return wall, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="shorten the job (to check the script only)")
    parser.add_argument("--threads", type=int, default=None, help="passed to seqbench run --threads")
    args = parser.parse_args()
    extra = ["--threads", str(args.threads)] if args.threads else []
    walls = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:  # a fresh results folder; the data cache stays warm
            wall, row = main_job(Path(tmp), args.max_steps, extra)
        walls.append(wall)
        print(f"run {i + 1}: wall {wall:.1f} s (in-process {row['wall_time_s']:.1f} s)  accuracy {row['accuracy']:.3f}"
              f"  accuracy_hard {row['accuracy_hard']:.3f}  gate_rate {row['gate_rate']:.3f}  steps {row['steps']}"
              f"  {row['tokens_per_sec']:,.0f} tokens/s  threads {row['threads']}", flush=True)
    verdict = "meets" if statistics.median(walls) <= 60 else "misses"
    print(f"median wall time {statistics.median(walls):.1f} s over {len(walls)} runs ({verdict} the 60 s target)")


if __name__ == "__main__":
    main()
