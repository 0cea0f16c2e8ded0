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

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # logs and pipes get whole tables rather than ones cut at 80 columns
        console.width = 160
    return console


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


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items, then ``--max-steps N`` as ``train.max_steps=N``."""
    return [*(args.set or []), *([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else [])]


def cmd_run(args: argparse.Namespace) -> int:
    from seqbench.runner import RunOptions, resolve_run_config, run

    registries = _registries()
    config = resolve_run_config(registries, args.model, args.task, variant=args.variant, preset=args.preset,
                                seed=args.seed, overrides=_overrides(args), precision=args.precision)
    console = _console()
    console.print(f"[bold]seqbench run[/] {config.model}/{config.variant} on {config.task} "
                  f"(preset {config.preset}, seed {config.seed}, config {config.config_hash()})")
    console.print_json(json.dumps(config.to_dict()))
    options = RunOptions(results_dir=Path(args.results), device=args.device, devices=args.devices,
                         strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress,
                         probes=tuple(args.probe or ()), loggers=tuple(args.logger or ()),
                         checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                         resume=args.resume, save_model=args.save_model, threads=args.threads)
    row = run(registries, config, options)
    _print_row(console, row)
    return 0 if row["status"] == "ok" else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from seqbench.evaluate import evaluate_saved_model

    console = _console()
    rows = evaluate_saved_model(_registries(), Path(args.results), args.run_id, device=args.device,
                                threads=args.threads)
    for row in rows:
        table_row = {k: v for k, v in row.items() if k not in ("run_id", "evaluated_at")}
        console.print(f"[bold]seqbench eval[/] {escape(args.run_id)} (test split, seq_len {row['seq_len']}): "
                      + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in table_row.items() if k != "seq_len"), soft_wrap=True)
    return 0


def _print_row(console, row: dict) -> None:
    from rich.table import Table

    table = Table(show_header=False, title=f"result {row['run_id']}", title_justify="left")
    for key in ("status", "accuracy", "perplexity", "mae", "loss", "gate_rate", "accuracy_hard", "gate_rate_hard",
                "attn_flop_fraction_hard", "lambda", "tokens_per_sec",
                "n_params", "steps", "wall_time_s", "device", "threads", "kernels"):
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


def _warn_unreadable(path: Path, exc: Exception) -> None:
    _console(stderr=True).print(f"[yellow]warning:[/] skipping unreadable results file {path}: "
                                f"{type(exc).__name__}: {exc}", soft_wrap=True)



def cmd_leaderboard(args: argparse.Namespace) -> int:
    from seqbench import leaderboard
    from seqbench.results import iter_rows, read_runs

    results = Path(args.results)
    if not (results / "runs").is_dir():
        raise UserError(f"no results in {results}/runs: run `seqbench run ...` first or pass --results DIR")
    rows = list(iter_rows(read_runs(results, on_unreadable=_warn_unreadable)))
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


# ---------------------------------------------------------------------------------- bench


def _csv(text: str | None, kind=str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    from seqbench.bench import BenchOptions, run_bench

    options = BenchOptions(
        models=_csv(args.models), variants=_csv(args.variant), lengths=_csv(args.lengths, int),
        modes=_csv(args.mode), preset=args.preset, overrides=tuple(args.set or ()),
        tokens_per_step=args.tokens_per_step, warmup=args.warmup, repeats=args.repeats, timeout_s=args.timeout,
        gate_rate=args.gate_rate, device=args.device, threads=args.threads, results_dir=Path(args.results))
    from seqbench.threads import apply_threads

    apply_threads(args.threads)
    from rich.table import Table

    console = _console()
    table = Table(title=f"seqbench bench (preset {options.preset}) -> {options.results_dir}/bench",
                  title_justify="left")
    for name in ("model", "variant", "mode", "seq_len", "batch", "status", "tokens/s", "peak mem", "MFLOP/token",
                 "MFU", "gate rate"):
        table.add_column(name, justify="left" if name in ("model", "variant", "mode", "status") else "right")
    statuses = []
    for row in run_bench(_registries(), options,
                         on_row=lambda r: console.print(f"  {r['model']}/{r['variant']} {r['mode']} "
                                                        f"L={r['seq_len']}: {r['status']}", style="dim")):
        statuses.append(row["status"])
        if row.get("forced_gate_rate") is not None:
            gate = f"{row['forced_gate_rate']:.3f} (forced)"
        else:
            gate = "—" if row.get("gate_rate") is None else f"{row['gate_rate']:.3f} (learned)"
        table.add_row(row["model"], row["variant"], row["mode"], str(row["seq_len"]), str(row["batch_size"]),
                      row["status"], _num(row.get("tokens_per_sec"), ",.0f"),
                      _num(row.get("peak_mem_bytes") and row["peak_mem_bytes"] / 2**20, ",.0f", " MiB"),
                      _num(row.get("flops_per_token") and row["flops_per_token"] / 1e6, ",.3f"),
                      _num(row.get("mfu"), ".1%"), gate)
    console.print(table)
    return 0 if all(s in ("ok", "oom", "timeout") for s in statuses) else 1


def _num(value, fmt: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{suffix}"


# ---------------------------------------------------------------------------------- sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    from seqbench.runner import RunOptions
    from seqbench.sweep import SweepSpec, expand, parse_shard, pending, remove_failed_rows, run_sweep, shard

    index, count = parse_shard(args.shard)
    if args.logger:
        from seqbench.tracking import check_loggers

        check_loggers(tuple(args.logger))  # before any cell: a missing extra is one error, not a failed row per cell
    spec = SweepSpec(models=_csv(args.models), tasks=_csv(args.tasks), seeds=_csv(args.seeds, int),
                     variants=_csv(args.variants), grid=tuple(args.grid or ()), sets=tuple(_overrides(args)),
                     preset=args.preset, precision=args.precision)
    registries = _registries()
    cells = expand(registries, spec)
    mine = shard(cells, index, count)
    results = Path(args.results)
    todo = pending(mine, results, on_unreadable=_warn_unreadable, retry_failed=args.retry_failed)
    console = _console()
    console.print(f"[bold]seqbench sweep[/] {len(cells)} cells in the grid, {len(mine)} in shard {index}/{count}, "
                  f"{len(mine) - len(todo)} already done, {len(todo)} to run -> {results}/runs")
    if args.dry_run:
        from rich.table import Table

        table = Table(title_justify="left", title="cells (dry run: nothing is run)")
        for name in ("#", "cell", "config_hash", "state"):
            table.add_column(name)
        waiting = {c.key for c in todo}
        for cell in mine:
            table.add_row(str(cell.index), cell.label(), cell.key, "to run" if cell.key in waiting else "done")
        console.print(table)
        return 0
    if not todo:
        return 0
    if args.retry_failed:
        remove_failed_rows(todo, results)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    options = RunOptions(results_dir=results, device=args.device, devices=args.devices, strategy=args.strategy,
                         num_nodes=args.num_nodes, progress=False, loggers=tuple(args.logger or ()),
                         checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
    counts: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task("sweep", total=len(todo))

        def start(cell):
            progress.update(bar, description=f"[bold]{cell.label()}")

        def done(cell, row):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            score = row.get("accuracy")
            detail = f" accuracy={score:.3f}" if isinstance(score, float) else ""
            if row["status"] not in ("ok", "diverged"):
                detail = f" {str(row.get('error') or '').splitlines()[0]}"
            colour = "green" if row["status"] == "ok" else "red"
            progress.console.print(f"  [{colour}]{row['status']}[/] {cell.label()}{detail}", soft_wrap=True)
            progress.advance(bar)

        run_sweep(registries, todo, options, on_start=start, on_done=done)
    console.print("done: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return 0 if set(counts) <= {"ok", "diverged"} else 1


# ----------------------------------------------------------------------------------- plot


def cmd_plot(args: argparse.Namespace) -> int:
    from seqbench.plots import make_plots

    out = Path(args.out) if args.out else Path(args.results) / "plots"
    written = make_plots(Path(args.results), out, on_unreadable=_warn_unreadable,
                         note=lambda text: _console(stderr=True).print(f"[yellow]note:[/] {text}", soft_wrap=True))
    console = _console()
    for path in written:
        console.print(f"wrote {path}")
    if not written:
        raise UserError(f"nothing to plot in {args.results}: it has no runs/, curves/ or bench/ rows yet")
    return 0


# --------------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    from seqbench.report import build_report, load_claims

    claims = load_claims(Path(args.claims) if args.claims else None)
    text = build_report(claims, Path(args.results), preset=args.preset, on_unreadable=_warn_unreadable)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        _console().print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _add_logger(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logger", action="append", choices=["csv", "tensorboard", "mlflow", "wandb"],
                   help="log to Lightning's CSV/TensorBoard/MLflow/W&B logger under <results>/logs/; repeatable")


def _add_checkpoints(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write a checkpoint every N steps under <results>/checkpoints/<config_hash>/")
    p.add_argument("--keep-checkpoints", type=int, default=2, metavar="K", help="keep the last K (default 2)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the cores this process may use, or OMP_NUM_THREADS)")


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed", "bf16-true"])
    p.add_argument("--devices", default="1", help="Lightning devices: a count, a list like 0,1, or auto")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-nodes", type=int, default=1)


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
    _add_scale_out(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--probe", action="append", choices=["rank"],
                   help="record a probe in the curves at each evaluation (rank: per-layer effective rank)")
    _add_logger(p)
    _add_checkpoints(p)
    p.add_argument("--resume", action="store_true", help="continue this configuration from its last checkpoint")
    p.add_argument("--save-model", action="store_true",
                   help="keep the final weights under <results>/models/<run_id>.pt (for `seqbench eval`)")
    _add_threads(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="test a model saved with `run --save-model` again, without retraining")
    p.add_argument("run_id")
    p.add_argument("--results", default="results")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_threads(p)
    p.set_defaults(func=cmd_eval)

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

    p = sub.add_parser("bench", help="tokens/s, peak memory and MFU against sequence length")
    p.add_argument("--models", required=True, help="comma-separated, e.g. transformer,gru")
    p.add_argument("--variant", default=None, help="comma-separated variants (default: each model's first)")
    p.add_argument("--lengths", default=None, help="comma-separated sequence lengths "
                   "(default: 512..8192 on CPU, 1024..32768 on GPU)")
    p.add_argument("--mode", default="train", help="train, infer or train,infer")
    p.add_argument("--preset", default="default", help="model sizes: smoke | default | paper")
    p.add_argument("--set", action="append", metavar="model.KEY=VALUE", help="model override; repeatable")
    p.add_argument("--gate-rate", type=float, default=None,
                   help="fix the fraction of gated units (models with force_gate_rate, e.g. the chunked TGN)")
    p.add_argument("--tokens-per-step", type=int, default=None,
                   help="batch = this // seq_len (default 8192 on CPU, 32768 on GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported (default 5)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per length before status timeout")
    _add_threads(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--results", default="results")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sweep", help="run the grid models x variants x tasks x seeds x overrides (resumable)")
    p.add_argument("--models", required=True, help="comma-separated model names")
    p.add_argument("--tasks", required=True, help="comma-separated task names")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--variants", default=None, help="comma-separated; each model takes those it has")
    p.add_argument("--grid", action="append", metavar="SECTION.KEY=V1,V2",
                   help="an axis of the grid, e.g. task.num_nodes=20,40,60; repeatable")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override for every cell")
    p.add_argument("--max-steps", type=int, default=None, help="shortcut for --set train.max_steps=N")
    p.add_argument("--preset", default="default", help="smoke | default | paper (default: default)")
    p.add_argument("--results", default="results")
    p.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (0 <= I < N)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether each is done")
    p.add_argument("--retry-failed", action="store_true",
                   help="run failed/oom cells again (their old rows are replaced)")
    _add_logger(p)
    _add_checkpoints(p)
    _add_scale_out(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="PNG figures from a results folder (nothing is re-run)")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: <results>/plots)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="markdown reproduction report of the seed paper's claims")
    p.add_argument("--results", default="results")
    p.add_argument("--preset", default="default", help="the scale whose runs and commands are reported")
    p.add_argument("--claims", default=None, help="a claims JSON file (default: the seed paper's)")
    p.add_argument("--out", default=None, help="write the markdown here instead of stdout")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        from rich.markup import escape

        _console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `seqbench list --json | head` is not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
