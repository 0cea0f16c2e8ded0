"""``seqbench leaderboard``, ``plot`` and ``report``: what a results folder says (nothing is re-run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from seqbench import cli
from seqbench.analyse import leaderboard
from seqbench.analyse.plots import make_plots
from seqbench.analyse.report import build_report, chosen_seed_commands, claim_commands, load_claims
from seqbench.analyse.summary import read_verdicts
from seqbench.cli.output import check_tune_keys, console, load_registries, warn, warn_unreadable
from seqbench.configure.options import check_readable_results, check_writable_dir, path_option
from seqbench.errors import RunInterrupted, UserError
from seqbench.registry import check_preset, unknown_name_message
from seqbench.results import atomic_write_text, config_settings, iter_rows, read_evals, read_runs


def cmd_leaderboard(args: argparse.Namespace) -> int:
    results = path_option(args.results)
    if not (results / "runs").is_dir():
        raise UserError(f"no results in {results}/runs: run `seqbench run ...` first or pass --results DIR")
    rows = list(iter_rows(read_runs(results, on_unreadable=warn_unreadable)))
    registries = load_registries()
    if args.task is not None and args.task not in {r["task"] for r in rows}:
        if args.task not in registries.tasks.names():
            raise UserError(unknown_name_message("task", args.task, registries.tasks.names()))
        raise UserError(f"no runs of task {args.task!r} in {results}/runs")
    evals, length_keys = [], {}
    if args.length is not None:
        evals = list(iter_rows(read_evals(results, on_unreadable=warn_unreadable)))
        length_keys = {s.name: s.length_key for s in registries.tasks if s.length_key}
    board = leaderboard.build(rows, task=args.task, tune=tuple(args.tune or ()), length=args.length, evals=evals,
                              length_keys=length_keys)
    if not board.entries:
        raise UserError(f"no runs{' of task ' + repr(args.task) if args.task else ''}"
                        f"{f' at length {args.length}' if args.length is not None else ''} in {results}/runs")
    text = leaderboard.render(board, args.format)
    if args.format == "csv" and board.collapsed:  # a csv holds only entries: say it beside them
        warn(f"{board.collapsed} duplicate row(s) collapsed: one value per (config, seed), the newest ok row")
    if args.out:
        try:
            atomic_write_text(text, Path(args.out))
        except OSError as exc:
            raise UserError(f"cannot write --out {args.out}: {exc.strerror or exc}; pick a writable path") from None
        console().print(f"wrote {escape(args.out)}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    results = path_option(args.results)
    check_readable_results(results)
    if args.tune:
        rows = iter_rows(read_runs(results, on_unreadable=lambda path, exc: None, columns=["config_json"]))
        check_tune_keys(args.tune, [config_settings(r) for r in rows], f"no run in {results}")
    out = path_option(args.out, "--out") if args.out is not None else results / "plots"
    check_writable_dir(out, "--out")
    written = make_plots(results, out, on_unreadable=warn_unreadable,
                         note=lambda text: console(stderr=True).print(f"[yellow]note:[/] {escape(text)}",
                                                                       soft_wrap=True),
                         tune=tuple(args.tune or ()))
    out = console()
    for path in written:
        out.print(f"wrote {escape(str(path))}")
    if not written:
        raise UserError(f"nothing to plot in {args.results}: it has no runs/, curves/ or bench/ rows yet")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    check_preset(args.preset)
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    results = path_option(args.results)
    if not args.run:  # --run creates the folder; a report of nothing is a mistake
        check_readable_results(results)
    out = path_option(args.out, "--out") if args.out is not None else None
    if out is not None:
        if out.is_dir():
            raise UserError(f"--out {out} is a folder: give a file name, e.g. --out {out / 'report.md'}")
        check_writable_dir(out.parent, "--out")
    claims = load_claims(path_option(args.claims, "--claims") if args.claims is not None else None)
    since = read_verdicts(path_option(args.since, "--since")) if args.since is not None else None  # before any run
    if args.run:
        check_writable_dir(results, "--results")
        run_claim_commands(claim_commands(claims, args.preset, results), args.jobs)
        # claims that choose a value at one seed run their other seeds at it once the first stage is done
        run_claim_commands(chosen_seed_commands(claims, args.preset, results), args.jobs)
    # the document names the command that regenerates it, which runs what is missing: --run, rendered or not
    command = " ".join(["seqbench report", f"--results {results}", f"--preset {args.preset}",
                        "--run", *([f"--jobs {args.jobs}"] if args.jobs > 1 else []),
                        *([f"--claims {args.claims}"] if args.claims else []),
                        *([f"--since {args.since}"] if args.since else []),
                        *([f"--out {args.out}"] if args.out else [])])
    text = build_report(claims, results, preset=args.preset, on_unreadable=warn_unreadable, out=out,
                        command=command, since=since)
    if out is not None:
        try:
            atomic_write_text(text, out)
        except OSError as exc:
            raise UserError(f"cannot write --out {out}: {exc.strerror or exc}; choose another file") from None
        console().print(f"wrote {escape(str(out))}")
    else:
        print(text)
    return 0


def run_claim_commands(commands: list[list[str]], jobs: int) -> None:
    """Each command the claims name, through seqbench's own command line: a sweep with ``--jobs`` cells at
    once (the local launcher divides the cores among them), anything else (benchmarks: they time the
    machine) alone. Both finish only what is missing, so an interrupted ``report --run`` resumes."""
    out = console()
    for argv in commands:
        if argv[0] == "sweep" and jobs > 1:
            argv = [*argv, "--jobs", str(jobs)]
        if argv[0] == "bench":  # sweeps skip cells with a row themselves; a benchmark is told to
            argv = [*argv, "--missing-only"]
        out.print(f"[bold]seqbench {escape(' '.join(argv))}[/]")
        # the CLI's own entry point, read at each call: the claims name seqbench command lines
        code = cli.main(argv)  # a sweep's failed cells are in its rows; the report shows what is missing
        if code > 128:  # SIGTERM or SIGINT stopped it (128 + signum): stop here too, render nothing
            raise RunInterrupted(code - 128, note=f"`seqbench {' '.join(argv[:1])}` was stopped; the same report "
                                                  "command runs (or resumes) what is missing")
