"""``seqbench sweep``: a grid of cells, from flags or an experiment file, on a launcher (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from seqbench.cli.output import check_tune_keys, console, load_registries, warn, warn_unreadable
from seqbench.configure.options import RunOptions, check_run_options, path_option
from seqbench.errors import RunInterrupted, UserError
from seqbench.results import Status, config_settings
from seqbench.sweeps.experiments import comparison_settings, convert, load_experiment, merge
from seqbench.sweeps.launchers import check_settings, get_launcher, threads_per_cell
from seqbench.sweeps.sweep import SweepSpec, expand, make_jobs, parse_shard, pending, shard
from seqbench.sweeps.sweep_progress import SweepProgress
from seqbench.train.evals import length_configs
from seqbench.train.preflight import check_checkpoint_settings, check_memory
from seqbench.train.runner import launched_as_rank_zero
from seqbench.train.tracking import check_loggers

_SWEEP_LISTS = ("models", "tasks", "variants", "seeds", "tune", "eval_lengths")


def sweep_args(args: argparse.Namespace):
    """The experiment file's settings (if one is given), overridden by the flags given on the command line."""
    settings = load_experiment(Path(args.experiment)) if args.experiment else {}
    flags = {}
    for key, value in vars(args).items():
        if value is None or key in ("command", "handler", "experiment", "dry_run"):
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
    settings = sweep_args(args)
    params, eval_lengths = comparison_settings(settings)
    check_settings(settings.launch)
    check_loggers(settings.logger)  # before any cell: a missing extra is one error, not a failed row per cell
    check_checkpoint_settings(settings.checkpoint_every, settings.keep_checkpoints)
    if not settings.claim_timeout > 0:
        raise UserError(f"--claim-timeout must be > 0 seconds, got {settings.claim_timeout}")
    index, count = parse_shard(settings.shard)
    registries = load_registries()
    cells = _cells(registries, settings, params, eval_lengths)
    check_tune_keys(settings.tune, [config_settings({"config_json": c.config.to_json()}) for c in cells],
                    "no cell of the grid")
    mine = shard(cells, index, count)
    results = path_option(settings.results)
    if args.dry_run and results.exists() and not results.is_dir():
        raise UserError(f"--results {results} is a file, not a folder: pass the results folder")
    # absolute: Ray tasks and SLURM jobs may start in another working directory
    options = RunOptions(results_dir=results.resolve(), device=settings.device, devices=settings.devices,
                         strategy=settings.strategy, num_nodes=settings.num_nodes, progress=False,
                         param_budget=params, eval_lengths=eval_lengths, loggers=settings.logger,
                         checkpoint_every=settings.checkpoint_every, keep_checkpoints=settings.keep_checkpoints)
    # every cell runs with these options: one check before the first cell, so no cell fails on them
    check_run_options(options, settings.precision, writable=not args.dry_run)
    todo = pending(mine, results, on_unreadable=warn_unreadable, retry_failed=settings.retry_failed)
    out = console()
    out.quiet = not launched_as_rank_zero()  # DDP cells run this command once per rank: rank 0 speaks
    out.print(f"[bold]seqbench sweep[/] {len(cells)} cells in the grid, {len(mine)} in shard {index}/{count}, "
              f"{len(mine) - len(todo)} already done, {len(todo)} to run -> {escape(str(results))}/runs")
    if args.dry_run:
        _print_cells(out, mine, todo)
        return 0
    if not todo:
        return 0
    jobs = make_jobs(todo, options, threads_per_cell(settings.launch), settings.claim_timeout,
                     settings.retry_failed)
    counts = _launch(out, get_launcher(settings.launch, registries, results), jobs)
    if settings.tune:
        out.print(f"tuned leaderboard: seqbench leaderboard --results {escape(str(results))} "
                  + " ".join(f"--tune {escape(key)}" for key in settings.tune))
    if out.quiet:
        return 0  # another DDP rank's: a non-zero exit would make Lightning kill rank 0 (see cmd_run)
    return 0 if set(counts) <= {Status.OK, Status.DIVERGED, "done", "claimed"} else 1


def _cells(registries, settings, params: int | None, eval_lengths: tuple[int, ...]) -> list:
    """The grid's cells, each config resolved and its evaluation lengths checked (before any cell runs)."""
    spec = SweepSpec(models=settings.models, tasks=settings.tasks, seeds=settings.seeds, variants=settings.variants,
                     grid=settings.grid, sets=settings.overrides(), preset=settings.preset,
                     precision=settings.precision, params=params)
    warnings_seen: set[str] = set()

    def note(text: str) -> None:  # once per model, not once per seed and grid value
        if text not in warnings_seen:
            warnings_seen.add(text)
            warn(text)

    cells = expand(registries, spec, note=note)
    for cell in cells:
        length_configs(registries, cell.config, eval_lengths)
        check_memory(registries, cell.config)
    return cells


def _print_cells(out, mine: list, todo: list) -> None:
    table = Table(title_justify="left", title="cells (dry run: nothing is run)")
    for name in ("#", "cell", "config_hash", "state"):
        table.add_column(name)
    waiting = {c.key for c in todo}
    for cell in mine:
        table.add_row(str(cell.index), escape(cell.label()), cell.key, "to run" if cell.key in waiting else "done")
    out.print(table)


def _launch(out, launcher, jobs: list) -> dict[str, int]:
    """Run the jobs with a progress display; the count of each outcome (a row's status, or done/claimed)."""
    counts: dict[str, int] = {}

    def count_outcome(job, outcome) -> None:
        state = outcome.row["status"] if outcome.state == "ran" and outcome.row else outcome.state
        counts[state] = counts.get(state, 0) + 1

    with SweepProgress(out, len(jobs)) as progress:
        try:
            launcher.run(jobs, lambda job, outcome: (count_outcome(job, outcome), progress.done(job, outcome)))
        except RunInterrupted as exc:  # no further cell was claimed, and the running ones let go of theirs
            finished = sum(counts.values())
            raise RunInterrupted(exc.signum, note=(
                f"{finished} of {len(jobs)} cells ended before it; {len(jobs) - finished} left without a row, which "
                "the same sweep command runs (each resuming from its checkpoint, if it has one)")) from None
    out.print("done: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return counts
