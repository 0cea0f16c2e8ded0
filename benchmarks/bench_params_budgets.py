"""How close ``--params N`` lands for every built-in model, on each task, over a range of budgets.

Each cell resolves a run config exactly as ``seqbench run --params N`` does (seqbench.configure.budget:
the width, and where the width alone misses by more than ±5%, one second size such as the MLP ratio) and
counts the parameters on the meta device. Nothing trains, so the figures do not depend on the machine.
Issue 24's target: every cell within ±5%. The script prints each cell that had to move a second size or
missed, then the worst distance, and exits 1 if any cell missed.

    python benchmarks/bench_params_budgets.py                         # cpu preset, 10k..500k
    python benchmarks/bench_params_budgets.py --preset default --budgets 50k,100k
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from seqbench.configure.budget import TOLERANCE, count_params, parse_param_count
from seqbench.configure.resolve import planned_task_info, resolve_run_config
from seqbench.registry import build_registries

MODELS = [("transformer", None), ("gru", None), ("mamba", None), ("tgn", "serial"), ("tgn", "parallel"),
          ("tgn", "chunked"), ("gcn", None), ("graphgps", None)]
TASKS = ["mqar", "assoc_recall", "ring_distance", "listops"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--budgets", default="10k,20k,50k,100k,200k,500k")
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args(argv)
    budgets = [parse_param_count(text) for text in args.budgets.split(",")]
    registries = build_registries()
    console = Console()
    table = Table(title=f"--params on the {args.preset} preset: cells that moved a second size or missed")
    for name in ("model", "task", "budget", "params", "off", "what moved"):
        table.add_column(name)
    worst, misses, cells = 0.0, 0, 0
    for task in args.tasks.split(","):
        for model, variant in MODELS:
            if not registries.models.get(model).inputs & registries.tasks.get(task).views:
                continue
            for budget in budgets:
                notes: list[str] = []
                config = resolve_run_config(registries, model, task, variant=variant, preset=args.preset,
                                            params=budget, note=notes.append)
                info = planned_task_info(registries.tasks.get(task), config.task_config)
                n = count_params(registries.models.get(model), config.model_config, info)
                off = (n - budget) / budget
                cells += 1
                worst = max(worst, abs(off))
                missed = abs(off) > TOLERANCE
                misses += missed
                if notes:
                    moved = "; ".join(note.split(", so ")[1].split(" too;")[0] for note in notes if ", so " in note)
                    table.add_row(f"{model}/{variant or 'default'}", task, f"{budget:,}", f"{n:,}",
                                  f"[red]{off:+.1%}[/]" if missed else f"{off:+.1%}", moved or "—")
    console.print(table)
    console.print(f"{cells} cells; worst distance from the budget {worst:.1%} (tolerance ±{TOLERANCE:.0%}); "
                  f"{misses} missed")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
