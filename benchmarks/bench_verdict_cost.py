"""The cost of a verdict: core-seconds of one cpu-preset run per reproduction cell, before and after.

"Before" is the committed evidence (``evidence/cpu/runs``, the rows behind docs/reproduction.md): per cell
(task with its config, model, variant) the seed-0 run at the cell's smallest learning rate, its
``wall_time_s x threads``, and the mean over the cell's runs. "After" re-runs exactly that config
(``seqbench run --from-config``, so the cell is the same one, hash-checked) with this checkout, at the
same thread count, and reads the new row's ``wall_time_s x threads``. A run that stops early (a target
reached) can stop at another step after a numerics change, so the steps of both are printed too.

    python benchmarks/bench_verdict_cost.py --dry-run            # the plan and the before figures only
    python benchmarks/bench_verdict_cost.py                      # every cell, one run each (~20-30 min, 1 thread)
    python benchmarks/bench_verdict_cost.py --tasks mqar,listops # only these tasks

Run it on a quiet machine (timing); ``OMP_NUM_THREADS`` is not needed: each run gets ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from seqbench.results import iter_rows, read_runs

ROOT = Path(__file__).resolve().parents[1]


def cells(evidence: Path, tasks: set[str] | None) -> dict[tuple, list[dict]]:
    """The evidence's ok cpu-preset rows grouped by cell: (task, task config, model, variant)."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in iter_rows(read_runs(evidence)):
        if row["preset"] != "cpu" or row["status"] != "ok" or (tasks and row["task"] not in tasks):
            continue
        config = json.loads(row["config_json"])
        key = (row["task"], json.dumps(config["task_config"], sort_keys=True), row["model"], row["variant"])
        grouped[key].append(row)
    return dict(sorted(grouped.items()))


def core_seconds(row: dict) -> float:
    return row["wall_time_s"] * row["threads"]


def task_label(task: str, task_config: str) -> str:
    """The task, with what tells its cells apart where the evidence has several sizes (ring N)."""
    config = json.loads(task_config)
    return f"{task} N={config['num_nodes']}" if "num_nodes" in config else task


def rerun(row: dict, threads: int) -> dict:
    """One run of ``row``'s exact config with this checkout; its new row."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("OMP_NUM_THREADS", None)  # --threads decides
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "seqbench.cli", "run", "--from-config", row["config_json"], "--results", tmp,
                   "--no-progress", "--threads", str(threads)]
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        (new,) = iter_rows(read_runs(Path(tmp)))
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", default=str(ROOT / "evidence" / "cpu"), help="the before rows' folder")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task there)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the before figures only")
    args = parser.parse_args()
    tasks = {t.strip() for t in args.tasks.split(",")} if args.tasks else None
    by_task: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # task -> [before, after] core-seconds
    print(f"{'task':22s} {'model':18s} {'before: core-s (steps)':>24s} {'cell mean':>10s} "
          f"{'after: core-s (steps)':>23s} {'after/before':>12s}")
    for (task, task_config, model, variant), rows in cells(Path(args.evidence), tasks).items():
        chosen = min(rows, key=lambda r: (r["seed"], json.loads(r["config_json"])["train"]["lr"]))
        before, mean = core_seconds(chosen), statistics.fmean(core_seconds(r) for r in rows)
        label, name = task_label(task, task_config), model if variant == "default" else f"{model}/{variant}"
        line = f"{label:22s} {name:18s} {before:15,.0f} ({chosen['steps']:5d}) {mean:10,.0f}"
        if args.dry_run:
            print(line, flush=True)
            continue
        new = rerun(chosen, chosen["threads"])
        after = core_seconds(new)
        by_task[label][0] += before
        by_task[label][1] += after
        print(f"{line} {after:14,.0f} ({new['steps']:5d}) {after / before:11.2f}x", flush=True)
    if by_task:
        print("\nper task, one run of each model summed:")
        for label, (before, after) in by_task.items():
            print(f"  {label:22s} before {before:8,.0f} core-s, after {after:8,.0f} core-s ({after / before:.2f}x)")
        total_before, total_after = (sum(v[i] for v in by_task.values()) for i in (0, 1))
        print(f"  {'all':22s} before {total_before:8,.0f} core-s, after {total_after:8,.0f} core-s "
              f"({total_after / total_before:.2f}x)")


if __name__ == "__main__":
    main()
