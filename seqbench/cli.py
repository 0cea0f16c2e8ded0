"""The ``seqbench`` command line.

Start-up stays light: ``--help`` and ``list`` import neither torch nor Lightning; each command imports
what it needs when it runs. A user's mistake (a :class:`UserError`) prints one message and exits 2.
Text that came from a user or a file (names, paths, values, messages quoting them) goes through
``rich.markup.escape`` before rich prints it, so ``[plot]`` or ``[/]`` is shown as typed, never read as markup.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.markup import escape

from seqbench import __version__
from seqbench.errors import UserError

EXIT_USER_ERROR = 2


def _registries(warn_broken: bool = True):
    from seqbench.registry import build_registries

    registries = build_registries()
    for name, error in (registries.broken_plugins if warn_broken else {}).items():
        _console(stderr=True).print(f"[yellow]warning:[/] plugin {escape(repr(name))} failed to load and was skipped: "
                                    f"{escape(str(error))}")
    return registries


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # logs and pipes get whole tables rather than ones cut at 80 columns
        console.width = 160
    return console


# ---------------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    registries = _registries(warn_broken=False)  # listed below instead
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
            table.add_row(*map(escape, (item["name"], ", ".join(value) if isinstance(value, list) else str(value),
                                        item["description"], item["plugin"] or "")))
        console.print(table)
    if registries.broken_plugins:
        table = Table(title="Broken plugins (skipped)", title_justify="left", title_style="bold red")
        table.add_column("plugin", style="bold")
        table.add_column("error")
        for name, error in registries.broken_plugins.items():
            table.add_row(escape(name), escape(error))
        console.print(table)
    return 0


# ----------------------------------------------------------------------------------- run


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items, then ``--max-steps N`` as ``train.max_steps=N``."""
    return [*(args.set or []), *([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else [])]


def _params(args: argparse.Namespace) -> int | None:
    from seqbench.budget import parse_param_count

    return None if args.params is None else parse_param_count(args.params)


def _eval_lengths(args: argparse.Namespace) -> tuple[int, ...]:
    from seqbench.evals import parse_lengths

    return () if args.eval_lengths is None else parse_lengths(args.eval_lengths)


def _warn(text: str) -> None:
    _console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


def _recorded_config(args: argparse.Namespace, registries):
    """``--from RUN_ID`` / ``--from-config``: the recorded config, exactly; what-to-run flags are refused."""
    from seqbench.replay import config_from_argument, config_from_json, recorded_row

    if args.from_run and args.from_config:
        raise UserError("give --from RUN_ID or --from-config, not both")
    clashing = [flag for flag, given in (("--model", args.model), ("--task", args.task), ("--variant", args.variant),
                                         ("--set", args.set), ("--max-steps", args.max_steps is not None),
                                         ("--seed", args.seed != 0), ("--preset", args.preset != "default"),
                                         ("--precision", args.precision != "32-true"),
                                         ("--params", args.params is not None)) if given]
    if clashing:
        raise UserError(f"--from re-runs the recorded config exactly; drop {', '.join(clashing)} (to change a "
                        "setting, start from the row's config with --model/--task/--set instead)")
    if args.from_config:
        return config_from_argument(registries, args.from_config)
    row = recorded_row(Path(args.results), args.from_run)
    return config_from_json(registries, row["config_json"], expected_hash=row["config_hash"],
                            where=f"run {row['run_id']}")


def cmd_run(args: argparse.Namespace) -> int:
    from seqbench.evals import length_configs
    from seqbench.options import check_run_options, path_option
    from seqbench.results import Status
    from seqbench.runner import RunOptions, launched_as_rank_zero, resolve_run_config, run

    registries = _registries()
    params, eval_lengths = _params(args), _eval_lengths(args)
    if args.from_run or args.from_config:
        config = _recorded_config(args, registries)
    elif not (args.model and args.task):
        raise UserError("run needs --model and --task (or --from RUN_ID to re-run a recorded run)")
    else:
        config = resolve_run_config(registries, args.model, args.task, variant=args.variant, preset=args.preset,
                                    seed=args.seed, overrides=_overrides(args), precision=args.precision,
                                    params=params, note=_warn)
    length_configs(registries, config, eval_lengths)  # an impossible length stops here, before training
    options = RunOptions(results_dir=path_option(args.results), device=args.device, devices=args.devices,
                         strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress,
                         probes=tuple(args.probe or ()), param_budget=params, eval_lengths=eval_lengths,
                         loggers=tuple(args.logger or ()), checkpoint_every=args.checkpoint_every,
                         keep_checkpoints=args.keep_checkpoints, resume=args.resume, save_model=args.save_model,
                         threads=args.threads)
    check_run_options(options, config.precision)
    console = _console()
    console.quiet = not launched_as_rank_zero()  # DDP runs this command once per rank: rank 0 speaks
    console.print(f"[bold]seqbench run[/] {escape(f'{config.model}/{config.variant} on {config.task}')} "
                  f"(preset {escape(config.preset)}, seed {config.seed}, config {config.config_hash()})")
    console.print_json(json.dumps(config.to_dict()))
    row = run(registries, config, options)
    if row["path"] is None:
        # Another rank's: rank 0 writes and reports the run. Exit 0 whatever the status, since Lightning
        # kills rank 0 when another rank exits non-zero, maybe before it has written the row.
        return 0
    _print_row(console, row)
    return 0 if row["status"] == Status.OK else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from seqbench.evaluate import evaluate_saved_model
    from seqbench.options import path_option
    from seqbench.results import Status

    console = _console()
    rows = evaluate_saved_model(_registries(), path_option(args.results), args.run_id, lengths=_eval_lengths(args),
                                device=args.device, threads=args.threads)
    for row in rows:
        shown = {k: v for k, v in row.items() if k not in ("seq_len", "length_key", "trained_len") and v is not None}
        console.print(f"[bold]seqbench eval[/] {escape(args.run_id)} (test split, {escape(str(row['length_key']))} "
                      f"{row['seq_len']}): " + escape("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                               for k, v in shown.items())), soft_wrap=True)
    return 0 if all(row["status"] == Status.OK for row in rows) else 1


def _print_row(console, row: dict) -> None:
    from rich.table import Table

    from seqbench.headline import hard_gate_collapsed, headline

    table = Table(show_header=False, title=f"result {escape(row['run_id'])}", title_justify="left")
    for key in ("status", "accuracy", "accuracy_hard", "chance", "perplexity", "mae", "loss", "val_accuracy",
                "val_perplexity", "gate_rate", "gate_rate_hard", "attn_flop_fraction_hard", "lambda",
                "tokens_per_sec", "n_params", "param_budget", "state_size", "steps", "wall_time_s", "device",
                "threads", "kernels"):
        value = row.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    table.add_row("written to", escape(row["path"]))
    console.print(table)
    lines = headline(row)
    for line in lines[:1]:
        console.print(escape(line))
    if hard_gate_collapsed(row):
        console.print(f"[bold yellow]warning:[/] {escape(lines[1])}", soft_wrap=True)


# ------------------------------------------------------------------------------ describe


def cmd_describe(args: argparse.Namespace) -> int:
    from seqbench.describe import describe_task
    from seqbench.options import check_seed

    check_seed(args.seed)
    if args.model:
        return _describe_model(args)
    if not args.task:
        raise UserError("describe needs --task T (its data) or --model M (its config keys)")
    report = describe_task(_registries(), args.task, preset=args.preset, seed=args.seed, overrides=args.set or [])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table

    table = Table(show_header=False, title=escape(f"task {report['task']} (preset {report['preset']})"),
                  title_justify="left")
    for key, value in report.items():
        if key in ("task", "preset"):
            continue
        if key == "label_distribution":
            value = "  ".join(f"{label}: {share:.1%}" for label, share in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, escape(str(value)))
    _console().print(table)
    return 0


def _describe_model(args: argparse.Namespace) -> int:
    from seqbench.describe import describe_model

    if args.task:
        raise UserError("describe takes --model or --task, not both")
    report = describe_model(_registries(), args.model, variant=args.variant)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table

    presets = list(report["keys"][0]["presets"]) if report["keys"] else []
    title = (f"model {report['model']} (variant {report['variant']}; variants: {', '.join(report['variants'])}) "
             f"— {report['config']}, set with --set model.KEY=VALUE")
    table = Table(title=escape(title),
                  title_justify="left")
    for name in ("key", "type", "default", *(f"preset {p}" for p in presets), "comment"):
        table.add_column(name, overflow="fold")
    for key in report["keys"]:
        values = [escape(json.dumps(key["presets"][p])) if key["presets"][p] == key["default"]
                  else f"[bold]{escape(json.dumps(key['presets'][p]))}[/]" for p in presets]
        table.add_row(key["key"], escape(key["type"]), escape(json.dumps(key["default"])), *values,
                      escape(key["comment"]))
    _console().print(table)
    return 0


# --------------------------------------------------------------------------- leaderboard


def _warn_unreadable(path: Path, exc: Exception) -> None:
    _console(stderr=True).print(f"[yellow]warning:[/] skipping unreadable results file {escape(str(path))}: "
                                f"{type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)



def cmd_leaderboard(args: argparse.Namespace) -> int:
    from seqbench import leaderboard
    from seqbench.options import path_option
    from seqbench.registry import unknown_name_message
    from seqbench.results import iter_rows, read_evals, read_runs

    results = path_option(args.results)
    if not (results / "runs").is_dir():
        raise UserError(f"no results in {results}/runs: run `seqbench run ...` first or pass --results DIR")
    rows = list(iter_rows(read_runs(results, on_unreadable=_warn_unreadable)))
    registries = _registries()
    if args.task is not None and args.task not in {r["task"] for r in rows}:
        if args.task not in registries.tasks.names():
            raise UserError(unknown_name_message("task", args.task, registries.tasks.names()))
        raise UserError(f"no runs of task {args.task!r} in {results}/runs")
    evals, length_keys = [], {}
    if args.length is not None:
        evals = list(iter_rows(read_evals(results, on_unreadable=_warn_unreadable)))
        length_keys = {s.name: s.length_key for s in registries.tasks if s.length_key}
    board = leaderboard.build(rows, task=args.task, tune=tuple(args.tune or ()), length=args.length, evals=evals,
                              length_keys=length_keys)
    if not board.entries:
        raise UserError(f"no runs{' of task ' + repr(args.task) if args.task else ''}"
                        f"{f' at length {args.length}' if args.length is not None else ''} in {results}/runs")
    text = leaderboard.render(board, args.format)
    if args.format == "csv" and board.collapsed:  # a csv holds only entries: say it beside them
        _warn(f"{board.collapsed} duplicate row(s) collapsed: one value per (config, seed), the newest ok row")
    if args.out:
        from seqbench.results import atomic_write_text

        try:
            atomic_write_text(text, Path(args.out))
        except OSError as exc:
            raise UserError(f"cannot write --out {args.out}: {exc.strerror or exc}; pick a writable path") from None
        _console().print(f"wrote {escape(args.out)}")
    else:
        sys.stdout.write(text)
    return 0


# ---------------------------------------------------------------------------------- bench


def _csv(text: str | None, kind=str, flag: str = "the option") -> tuple | None:
    """A comma-separated option value; ``flag`` names the option in the error messages."""
    if text is None:
        return None
    try:
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"bad {flag} {text!r}: expected a comma-separated list of {kind.__name__}s") from None
    if not values:
        raise UserError(f"{flag} {text!r} lists nothing: give one or more comma-separated values")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from seqbench.bench import BenchOptions, run_bench
    from seqbench.options import check_writable_dir, path_option
    from seqbench.results import Status
    from seqbench.runner import pick_accelerator

    options = BenchOptions(
        models=_csv(args.models, flag="--models"), variants=_csv(args.variant, flag="--variant"),
        lengths=_csv(args.lengths, int, flag="--lengths"), modes=_csv(args.mode, flag="--mode"), preset=args.preset,
        overrides=tuple(args.set or ()), tokens_per_step=args.tokens_per_step, warmup=args.warmup,
        repeats=args.repeats, timeout_s=args.timeout, gate_rate=args.gate_rate, device=args.device,
        threads=args.threads, results_dir=path_option(args.results), params=_params(args),
        missing_only=args.missing_only)
    pick_accelerator(options.device)
    check_writable_dir(options.results_dir, "--results", subdirs=("bench",))
    from seqbench.threads import apply_threads

    apply_threads(args.threads)
    from rich.table import Table

    console = _console()
    table = Table(title=escape(f"seqbench bench (preset {options.preset}) -> {options.results_dir}/bench"),
                  title_justify="left")
    for name in ("model", "variant", "mode", "seq_len", "batch", "status", "tokens/s", "peak mem", "MFLOP/token",
                 "MFU", "gate rate"):
        table.add_column(name, justify="left" if name in ("model", "variant", "mode", "status") else "right")
    statuses = []
    for row in run_bench(_registries(), options,
                         on_row=lambda r: console.print(escape(f"  {r['model']}/{r['variant']} {r['mode']} "
                                                               f"L={r['seq_len']}: {r['status']}"), style="dim"),
                         note=_warn):
        statuses.append(row["status"])
        if row.get("forced_gate_rate") is not None:
            gate = f"{row['forced_gate_rate']:.3f} (forced)"
        else:
            gate = "—" if row.get("gate_rate") is None else f"{row['gate_rate']:.3f} (learned)"
        table.add_row(escape(row["model"]), escape(row["variant"]), row["mode"], str(row["seq_len"]),
                      str(row["batch_size"]),
                      row["status"], _num(row.get("tokens_per_sec"), ",.0f"),
                      _num(row.get("peak_mem_bytes") and row["peak_mem_bytes"] / 2**20, ",.0f", " MiB"),
                      _num(row.get("flops_per_token") and row["flops_per_token"] / 1e6, ",.3f"),
                      _num(row.get("mfu"), ".1%"), gate)
    if statuses:
        console.print(table)
    else:  # --missing-only found everything measured
        console.print(escape(f"nothing to measure: {options.results_dir} already holds an ok row of each"))
    return 0 if all(s in (Status.OK, Status.OOM, Status.TIMEOUT) for s in statuses) else 1


def _num(value, fmt: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{suffix}"


# ---------------------------------------------------------------------------------- sweep


_SWEEP_LISTS = ("models", "tasks", "variants", "seeds", "tune", "eval_lengths")


def _sweep_args(args: argparse.Namespace):
    """The experiment file's settings (if one is given), overridden by the flags given on the command line."""
    from seqbench.experiments import convert, load_experiment, merge

    settings = load_experiment(Path(args.experiment)) if args.experiment else {}
    flags = {}
    for key, value in vars(args).items():
        if value is None or key in ("command", "func", "experiment", "dry_run"):
            continue
        if key in _SWEEP_LISTS:
            try:
                value = convert(key, value)
            except UserError as exc:  # name the flag the user typed
                raise UserError(f"bad --{key.replace('_', '-')}: {exc}") from None
        elif key in ("grid", "sets", "logger"):
            value = tuple(value)
        flags[key] = value
    merged = merge(settings, flags)
    if not merged.models or not merged.tasks:
        raise UserError("sweep needs --models and --tasks, or an experiment file that lists models and tasks")
    return merged


def cmd_sweep(args: argparse.Namespace) -> int:
    from seqbench.evals import length_configs
    from seqbench.experiments import comparison_settings
    from seqbench.launchers import check_settings, get_launcher, threads_per_cell
    from seqbench.options import check_run_options, path_option
    from seqbench.results import Status
    from seqbench.runner import RunOptions, launched_as_rank_zero
    from seqbench.sweep import SweepSpec, expand, make_jobs, parse_shard, pending, shard
    from seqbench.sweep_progress import SweepProgress
    from seqbench.tracking import check_loggers

    settings = _sweep_args(args)
    params, eval_lengths = comparison_settings(settings)
    check_settings(settings.launch)
    check_loggers(settings.logger)  # before any cell: a missing extra is one error, not a failed row per cell
    if not settings.claim_timeout > 0:
        raise UserError(f"--claim-timeout must be > 0 seconds, got {settings.claim_timeout}")
    index, count = parse_shard(settings.shard)
    spec = SweepSpec(models=settings.models, tasks=settings.tasks, seeds=settings.seeds, variants=settings.variants,
                     grid=settings.grid, sets=settings.overrides(), preset=settings.preset,
                     precision=settings.precision, params=params)
    registries = _registries()
    warnings_seen: set[str] = set()

    def note(text: str) -> None:  # once per model, not once per seed and grid value
        if text not in warnings_seen:
            warnings_seen.add(text)
            _warn(text)

    cells = expand(registries, spec, note=note)
    for cell in cells:
        length_configs(registries, cell.config, eval_lengths)
    mine = shard(cells, index, count)
    results = path_option(settings.results)
    # absolute: Ray tasks and SLURM jobs may start in another working directory
    options = RunOptions(results_dir=results.resolve(), device=settings.device, devices=settings.devices,
                         strategy=settings.strategy, num_nodes=settings.num_nodes, progress=False,
                         param_budget=params, eval_lengths=eval_lengths, loggers=settings.logger,
                         checkpoint_every=settings.checkpoint_every, keep_checkpoints=settings.keep_checkpoints)
    # every cell runs with these options: one check before the first cell, so no cell fails on them
    check_run_options(options, spec.precision, writable=not args.dry_run)
    todo = pending(mine, results, on_unreadable=_warn_unreadable, retry_failed=settings.retry_failed)
    console = _console()
    console.quiet = not launched_as_rank_zero()  # DDP cells run this command once per rank: rank 0 speaks
    console.print(f"[bold]seqbench sweep[/] {len(cells)} cells in the grid, {len(mine)} in shard {index}/{count}, "
                  f"{len(mine) - len(todo)} already done, {len(todo)} to run -> {escape(str(results))}/runs")
    if args.dry_run:
        from rich.table import Table

        table = Table(title_justify="left", title="cells (dry run: nothing is run)")
        for name in ("#", "cell", "config_hash", "state"):
            table.add_column(name)
        waiting = {c.key for c in todo}
        for cell in mine:
            table.add_row(str(cell.index), escape(cell.label()), cell.key,
                          "to run" if cell.key in waiting else "done")
        console.print(table)
        return 0
    if not todo:
        return 0
    launcher = get_launcher(settings.launch, registries, results)
    jobs = make_jobs(todo, options, threads_per_cell(settings.launch), settings.claim_timeout,
                     settings.retry_failed)
    counts: dict[str, int] = {}

    def count_outcome(job, outcome) -> None:
        state = outcome.row["status"] if outcome.state == "ran" and outcome.row else outcome.state
        counts[state] = counts.get(state, 0) + 1

    with SweepProgress(console, len(jobs)) as progress:
        launcher.run(jobs, lambda job, outcome: (count_outcome(job, outcome), progress.done(job, outcome)))
    console.print("done: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if settings.tune:
        console.print(f"tuned leaderboard: seqbench leaderboard --results {escape(str(results))} "
                      + " ".join(f"--tune {escape(key)}" for key in settings.tune))
    if console.quiet:
        return 0  # another DDP rank's: a non-zero exit would make Lightning kill rank 0 (see cmd_run)
    return 0 if set(counts) <= {Status.OK, Status.DIVERGED, "done", "claimed"} else 1


# ----------------------------------------------------------------------------------- plot


def cmd_plot(args: argparse.Namespace) -> int:
    from seqbench.options import check_readable_results, check_writable_dir, path_option
    from seqbench.plots import make_plots

    results = path_option(args.results)
    check_readable_results(results)
    out = path_option(args.out, "--out") if args.out is not None else results / "plots"
    check_writable_dir(out, "--out")
    written = make_plots(results, out, on_unreadable=_warn_unreadable,
                         note=lambda text: _console(stderr=True).print(f"[yellow]note:[/] {escape(text)}",
                                                                       soft_wrap=True),
                         tune=tuple(args.tune or ()))
    console = _console()
    for path in written:
        console.print(f"wrote {escape(str(path))}")
    if not written:
        raise UserError(f"nothing to plot in {args.results}: it has no runs/, curves/ or bench/ rows yet")
    return 0


# --------------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    from seqbench.options import check_readable_results, check_writable_dir, path_option
    from seqbench.registry import check_preset
    from seqbench.report import build_report, claim_commands, load_claims
    from seqbench.results import atomic_write_text

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
    if args.run:
        check_writable_dir(results, "--results")
        _run_claim_commands(claim_commands(claims, args.preset, results), args.jobs)
    command = " ".join(["seqbench report", f"--results {results}", f"--preset {args.preset}",
                        *(["--run"] if args.run else []), *([f"--jobs {args.jobs}"] if args.jobs > 1 else []),
                        *([f"--claims {args.claims}"] if args.claims else []),
                        *([f"--out {args.out}"] if args.out else [])])
    text = build_report(claims, results, preset=args.preset, on_unreadable=_warn_unreadable, out=out,
                        command=command)
    if out is not None:
        try:
            atomic_write_text(text, out)
        except OSError as exc:
            raise UserError(f"cannot write --out {out}: {exc.strerror or exc}; choose another file") from None
        _console().print(f"wrote {escape(str(out))}")
    else:
        print(text)
    return 0


def _run_claim_commands(commands: list[list[str]], jobs: int) -> None:
    """Each command the claims name, through seqbench's own command line: a sweep with ``--jobs`` cells at
    once (the local launcher divides the cores among them), anything else (benchmarks: they time the
    machine) alone. Both finish only what is missing, so an interrupted ``report --run`` resumes."""
    console = _console()
    for argv in commands:
        if argv[0] == "sweep" and jobs > 1:
            argv = [*argv, "--jobs", str(jobs)]
        if argv[0] == "bench":  # sweeps skip cells with a row themselves; a benchmark is told to
            argv = [*argv, "--missing-only"]
        console.print(f"[bold]seqbench {escape(' '.join(argv))}[/]")
        main(argv)  # a sweep's failed cells are in its rows; the report shows what is missing


def _add_logger(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logger", action="append", choices=["csv", "tensorboard", "mlflow", "wandb"],
                   help="log to Lightning's CSV/TensorBoard/MLflow/W&B logger under <results>/logs/; repeatable")


def _add_checkpoints(p: argparse.ArgumentParser, keep_default: int | None = 2) -> None:
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write a checkpoint every N steps under <results>/checkpoints/<config_hash>/")
    p.add_argument("--keep-checkpoints", type=int, default=keep_default, metavar="K",
                   help="keep the last K (default 2)")


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


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=None, metavar="N",
                   help="solve each model's width for N parameters (e.g. 100k, 1.5M; within ±5%%, else the "
                        "closest with a warning)")


def _add_eval_lengths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-lengths", default=None, metavar="L1,L2",
                   help="after training, test again at these lengths (the task's length key) -> <results>/evals/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqbench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered models and tasks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="train and test one model on one task; writes one Parquet row")
    p.add_argument("--model", default=None, help="required unless --from or --from-config")
    p.add_argument("--variant", default=None, help="model variant (default: the model's first)")
    p.add_argument("--task", default=None, help="required unless --from or --from-config")
    p.add_argument("--from", dest="from_run", default=None, metavar="RUN_ID",
                   help="re-run a recorded run's config exactly (a run id in --results, or a run file)")
    p.add_argument("--from-config", default=None, metavar="FILE_OR_JSON",
                   help="re-run a row's config_json exactly (the JSON, or a file holding it)")
    p.add_argument("--preset", default="default", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a model./task./train. setting; repeatable")
    p.add_argument("--max-steps", type=int, default=None, help="shortcut for --set train.max_steps=N")
    p.add_argument("--results", default="results", help="results folder (default: results/)")
    _add_scale_out(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--probe", action="append", choices=["rank"],
                   help="record a probe in the curves at each evaluation (rank: per-layer effective rank)")
    _add_params(p)
    _add_eval_lengths(p)
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
    _add_eval_lengths(p)
    _add_threads(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("describe", help="a task's train split (--task), or a model's config keys (--model)")
    p.add_argument("--task", default=None, help="the task's train split: size, labels, majority-class rate")
    p.add_argument("--model", default=None,
                   help="every model.* key: type, default, each preset's value and its comment")
    p.add_argument("--variant", default=None, help="with --model: the variant (default: the model's first)")
    p.add_argument("--preset", default="default", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="task.KEY=VALUE", help="override a task setting; repeatable")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("leaderboard", help="rank models per task from a results folder")
    p.add_argument("--results", default="results")
    p.add_argument("--task", default=None)
    p.add_argument("--format", default="table", choices=["table", "markdown", "csv", "json"],
                   help="csv and json hold raw numbers (mean, low, high, n, seeds, tuned values)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the leaderboard here instead of stdout")
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="choose this setting per model on validation (e.g. train.lr); repeatable")
    p.add_argument("--length", type=int, default=None,
                   help="rank by the test at this length (runs evaluated with --eval-lengths)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("bench", help="tokens/s, peak memory and MFU against sequence length")
    p.add_argument("--models", required=True, help="comma-separated, e.g. transformer,gru")
    p.add_argument("--variant", default=None, help="comma-separated variants (default: each model's first)")
    p.add_argument("--lengths", default=None, help="comma-separated sequence lengths "
                   "(default: 512..8192 on CPU, 1024..32768 on GPU)")
    p.add_argument("--mode", default="train", help="train, infer or train,infer")
    p.add_argument("--preset", default="default", help="model sizes: smoke | default | cpu | paper")
    p.add_argument("--set", action="append", metavar="model.KEY=VALUE", help="model override; repeatable")
    p.add_argument("--gate-rate", type=float, default=None,
                   help="fix the fraction of gated units (models with force_gate_rate, e.g. the chunked TGN)")
    p.add_argument("--tokens-per-step", type=int, default=None,
                   help="batch = this // seq_len (default 8192 on CPU, 32768 on GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported (default 5)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per length before status timeout")
    p.add_argument("--missing-only", action="store_true",
                   help="skip each (model, variant, mode, length) that --results already holds an ok row of "
                        "(same preset, device, threads, --params, --gate-rate); report --run resumes this way")
    _add_threads(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--results", default="results")
    _add_params(p)
    p.set_defaults(func=cmd_bench)

    # Sweep flags default to None (not given): given ones override an experiment file, which overrides
    # seqbench.experiments.SweepArgs's defaults (shown here in the help).
    p = sub.add_parser("sweep", help="run the grid models x variants x tasks x seeds x overrides (resumable)")
    p.add_argument("experiment", nargs="?", default=None,
                   help="an experiment file (TOML, e.g. experiments/smoke.toml); flags override it")
    p.add_argument("--models", help="comma-separated model names")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--variants", help="comma-separated; each model takes those it has")
    p.add_argument("--grid", action="append", metavar="SECTION.KEY=V1,V2",
                   help="an axis of the grid, e.g. task.num_nodes=20,40,60; repeatable")
    p.add_argument("--set", dest="sets", action="append", metavar="SECTION.KEY=VALUE",
                   help="override for every cell; repeatable")
    p.add_argument("--max-steps", type=int, help="shortcut for --set train.max_steps=N")
    p.add_argument("--preset", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--results", help="results folder (default: results/)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (0 <= I < N)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether each is done")
    p.add_argument("--retry-failed", action="store_true", default=None,
                   help="run failed/oom cells again (their old rows are replaced)")
    p.add_argument("--claim-timeout", type=float, metavar="SECONDS",
                   help="take over a cell's claim after this long without its owner's heartbeat (default 6 h)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed", "bf16-true"], help="default: 32-true")
    p.add_argument("--devices", help="Lightning devices per cell: a count, a list like 0,1, or auto (default 1)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp (default: auto)")
    p.add_argument("--num-nodes", type=int, help="default 1")
    g = p.add_argument_group("launchers (where cells run; see README)")
    g.add_argument("--launcher", choices=["local", "ray", "slurm"], help="default: local")
    g.add_argument("--jobs", type=int, help="local: cells at once, each its own process, sharing the cores (default 1)")
    g.add_argument("--address", help="ray: an existing cluster's address (default: start a local instance)")
    g.add_argument("--cpus-per-cell", type=int, help="ray, slurm: CPUs (and torch threads) per cell (default 1)")
    g.add_argument("--gpus-per-cell", type=float, help="ray, slurm: GPUs per cell (default 0)")
    g.add_argument("--slurm-partition", help="slurm: the partition")
    g.add_argument("--slurm-time", help="slurm: each job's time limit, minutes or [D-]H:MM:SS (default 60)")
    g.add_argument("--slurm-array-parallelism", type=int, help="slurm: array tasks running at once (default 256)")
    g.add_argument("--slurm-folder", help="slurm: submitit's logs and job files (default <results>/slurm)")
    g.add_argument("--slurm-cluster", choices=["slurm", "local", "debug"],
                   help="slurm: submitit's cluster (default: detected); local runs the jobs on this machine")
    _add_params(p)
    _add_eval_lengths(p)
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="a key the grid tunes (e.g. train.lr): printed as the leaderboard command to read the sweep")
    _add_logger(p)
    _add_checkpoints(p, keep_default=None)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="PNG figures from a results folder (nothing is re-run)")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: <results>/plots)")
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="draw only each model's value of KEY chosen on validation (e.g. train.lr); repeatable")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="markdown reproduction report of the seed paper's claims")
    p.add_argument("--results", default="results")
    p.add_argument("--preset", default="default", help="the scale whose runs and commands are reported")
    p.add_argument("--claims", default=None, help="a claims JSON file (default: the seed paper's)")
    p.add_argument("--out", default=None,
                   help="write the markdown here (figures beside it, in <name>_figures/) instead of stdout")
    p.add_argument("--run", action="store_true",
                   help="first run the sweeps and benchmarks the claims name at --preset (resumable: only what "
                        "is missing runs), then render")
    p.add_argument("--jobs", type=int, default=1, help="with --run: sweep cells run at once (default 1)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `seqbench list --json | head` is not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
