"""The ``seqbench`` command line.

Start-up stays light: ``--help`` and ``list`` import neither torch nor Lightning; each command imports
what it needs when it runs. A user's mistake (a :class:`UserError`) prints one message and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqbench import __version__
from seqbench.errors import UserError

EXIT_USER_ERROR = 2


def _registries():
    from seqbench.registry import build_registries

    registries = build_registries()
    for name, error in registries.broken_plugins.items():
        _console(stderr=True).print(f"[yellow]warning:[/] plugin {name!r} failed to load and was skipped: {error}")
    return registries


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


# ---------------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    registries = _registries()
    models = [{"name": s.name, "description": s.description, "variants": list(s.variants),
               "inputs": sorted(s.inputs), "plugin": registries.models.origin(s.name)} for s in registries.models]
    tasks = [{"name": s.name, "description": s.description, "version": s.version, "metric": s.metric,
              "views": sorted(s.views), "plugin": registries.tasks.origin(s.name)} for s in registries.tasks]
    if args.json:
        print(json.dumps({"models": models, "tasks": tasks, "broken_plugins": registries.broken_plugins}, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    for title, items, extra in (("Models", models, "variants"), ("Tasks", tasks, "metric")):
        table = Table(title=title, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column(extra)
        table.add_column("description")
        table.add_column("plugin", style="dim")
        for item in items:
            value = item[extra]
            table.add_row(item["name"], ", ".join(value) if isinstance(value, list) else str(value),
                          item["description"], item["plugin"] or "")
        console.print(table)
    return 0


# ----------------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from seqbench.runner import RunOptions, resolve_run_config, run

    registries = _registries()
    config = resolve_run_config(registries, args.model, args.task, variant=args.variant, preset=args.preset,
                                seed=args.seed, overrides=args.set or [], precision=args.precision)
    if args.max_steps is not None:
        from dataclasses import replace

        config = replace(config, train=replace(config.train, max_steps=args.max_steps))
    console = _console()
    console.print(f"[bold]seqbench run[/] {config.model}/{config.variant} on {config.task} "
                  f"(preset {config.preset}, seed {config.seed}, config {config.config_hash()})")
    console.print_json(json.dumps(config.to_dict()))
    options = RunOptions(results_dir=Path(args.results), device=args.device, devices=args.devices,
                         strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress,
                         probes=tuple(args.probe or ()))
    row = run(registries, config, options)
    _print_row(console, row)
    return 0 if row["status"] == "ok" else 1


def _print_row(console, row: dict) -> None:
    from rich.table import Table

    table = Table(show_header=False, title=f"result {row['run_id']}", title_justify="left")
    for key in ("status", "accuracy", "perplexity", "mae", "loss", "gate_rate", "accuracy_hard", "gate_rate_hard",
                "attn_flop_fraction_hard", "lambda", "tokens_per_sec",
                "n_params", "steps", "wall_time_s", "device", "kernels"):
        value = row.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("written to", row["path"])
    console.print(table)


# ------------------------------------------------------------------------------ describe


def cmd_describe(args: argparse.Namespace) -> int:
    from seqbench.describe import describe_task

    report = describe_task(_registries(), args.task, preset=args.preset, seed=args.seed, overrides=args.set or [])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table

    table = Table(show_header=False, title=f"task {report['task']} (preset {report['preset']})", title_justify="left")
    for key, value in report.items():
        if key in ("task", "preset"):
            continue
        if key == "label_distribution":
            value = "  ".join(f"{label}: {share:.1%}" for label, share in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    _console().print(table)
    return 0


# --------------------------------------------------------------------------- leaderboard


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from seqbench import leaderboard
    from seqbench.results import iter_rows, read_runs

    results = Path(args.results)
    if not (results / "runs").is_dir():
        raise UserError(f"no results in {results}/runs: run `seqbench run ...` first or pass --results DIR")
    rows = list(iter_rows(read_runs(results)))
    entries = leaderboard.build(rows, task=args.task)
    if not entries:
        raise UserError(f"no runs{' of task ' + repr(args.task) if args.task else ''} in {results}/runs")
    print_leaderboard(entries, args.format)
    return 0


def print_leaderboard(entries, fmt: str) -> None:
    header = ["rank", "model", "variant", "setting", "score", "seeds", "params", "tokens/s", "gate_rate"]

    def cells(rank, e):
        return [str(rank), e.model, e.variant, e.setting,
                e.score.text() + ("" if not e.not_ok else f" ({e.not_ok} not ok)"), str(e.seeds),
                f"{e.n_params:,}" if e.n_params else "—",
                f"{e.tokens_per_sec:,.0f}" if e.tokens_per_sec else "—", e.gate_rate.text()]

    tables: dict[tuple, list] = {}
    for e in entries:
        tables.setdefault((e.task, e.preset, e.metric), []).append(e)
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["task", "preset", "metric", *header, "score_mean", "score_ci95", "gate_rate_mean"])
        for (task, preset, metric), group in tables.items():
            for rank, e in enumerate(group, 1):
                writer.writerow([task, preset, metric, *cells(rank, e), e.score.mean, e.score.half_width,
                                 e.gate_rate.mean])
        return
    console = _console()
    for (task, preset, metric), group in tables.items():
        title = f"{task} — preset {preset} — {metric} (mean ± 95% t-interval over seeds)"
        rows = [cells(rank, e) for rank, e in enumerate(group, 1)]
        if fmt == "markdown":
            print(f"### {title}\n")
            print("| " + " | ".join(header[:4] + [metric] + header[5:]) + " |")
            print("|" + "---|" * len(header))
            for row in rows:
                print("| " + " | ".join(row) + " |")
            print()
        else:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for name in header:
                table.add_column(metric if name == "score" else name,
                                 justify="right" if name not in ("model", "variant", "setting") else "left")
            for row in rows:
                table.add_row(*row)
            console.print(table)


# ---------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqbench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered models and tasks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="train and test one model on one task; writes one Parquet row")
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default=None, help="model variant (default: the model's first)")
    p.add_argument("--task", required=True)
    p.add_argument("--preset", default="default", help="smoke | default | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a model./task./train. setting; repeatable")
    p.add_argument("--max-steps", type=int, default=None, help="shortcut for --set train.max_steps=N")
    p.add_argument("--results", default="results", help="results folder (default: results/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed", "bf16-true"])
    p.add_argument("--devices", default="1", help="Lightning devices: a count, a list like 0,1, or auto")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--probe", action="append", choices=["rank"],
                   help="record a probe in the curves at each evaluation (rank: per-layer effective rank)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("describe", help="a task's train split: size, label distribution, majority-class rate")
    p.add_argument("--task", required=True)
    p.add_argument("--preset", default="default", help="smoke | default | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="task.KEY=VALUE", help="override a task setting; repeatable")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("leaderboard", help="rank models per task from a results folder")
    p.add_argument("--results", default="results")
    p.add_argument("--task", default=None)
    p.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `seqbench list --json | head` is not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
