"""``seqbench run`` (train and test one configuration) and ``seqbench eval`` (test a saved model again)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from seqbench.cli.output import console, load_registries, warn
from seqbench.configure.budget import parse_param_count
from seqbench.configure.options import RunOptions, check_run_options, path_option
from seqbench.configure.replay import config_from_argument, config_from_json, recorded_row
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import UserError
from seqbench.results import Status
from seqbench.train.evals import length_configs, parse_lengths
from seqbench.train.evaluate import evaluate_saved_model
from seqbench.train.headline import hard_gate_collapsed, headline
from seqbench.train.preflight import check_before_training
from seqbench.train.runner import launched_as_rank_zero, run


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items, then ``--max-steps N`` as ``train.max_steps=N``."""
    return [*(args.set or []), *([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else [])]


def param_budget(args: argparse.Namespace) -> int | None:
    """``--params`` as a parameter count (``run``, ``bench``); None when not given."""
    return None if args.params is None else parse_param_count(args.params)


def lengths_option(args: argparse.Namespace) -> tuple[int, ...]:
    """``--eval-lengths`` as lengths (``run``, ``eval``); () when not given."""
    return () if args.eval_lengths is None else parse_lengths(args.eval_lengths)


def _recorded_config(args: argparse.Namespace, registries):
    """``--from RUN_ID`` / ``--from-config``: the recorded config, exactly; what-to-run flags are refused."""
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
    registries = load_registries()
    params, eval_lengths = param_budget(args), lengths_option(args)
    notes: list[str] = []  # said once the checks pass: a refused run is one line
    if args.from_run or args.from_config:
        config = _recorded_config(args, registries)
    elif not (args.model and args.task):
        raise UserError("run needs --model and --task (or --from RUN_ID to re-run a recorded run)")
    else:
        config = resolve_run_config(registries, args.model, args.task, variant=args.variant, preset=args.preset,
                                    seed=args.seed, overrides=_overrides(args), precision=args.precision,
                                    params=params, note=notes.append)
    length_configs(registries, config, eval_lengths)  # an impossible length stops here, before training
    options = RunOptions(results_dir=path_option(args.results), device=args.device, devices=args.devices,
                         strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress,
                         probes=tuple(args.probe or ()), param_budget=params, eval_lengths=eval_lengths,
                         loggers=tuple(args.logger or ()), checkpoint_every=args.checkpoint_every,
                         keep_checkpoints=args.keep_checkpoints, resume=args.resume, save_model=args.save_model,
                         threads=args.threads)
    check_run_options(options, config.precision)
    check_before_training(registries, config, options)  # before the config is printed: a mistake is one line
    for note in notes:
        warn(note)
    out = console()
    out.quiet = not launched_as_rank_zero()  # DDP runs this command once per rank: rank 0 speaks
    out.print(f"[bold]seqbench run[/] {escape(f'{config.model}/{config.variant} on {config.task}')} "
              f"(preset {escape(config.preset)}, seed {config.seed}, config {config.config_hash()})")
    out.print_json(json.dumps(config.to_dict()))
    row = run(registries, config, options)
    if row["path"] is None:
        # Another rank's: rank 0 writes and reports the run. Exit 0 whatever the status, since Lightning
        # kills rank 0 when another rank exits non-zero, maybe before it has written the row.
        return 0
    print_row(out, row)
    return 0 if row["status"] == Status.OK else 1


def cmd_eval(args: argparse.Namespace) -> int:
    out = console()
    rows = evaluate_saved_model(load_registries(), path_option(args.results), args.run_id,
                                lengths=lengths_option(args), device=args.device, threads=args.threads)
    for row in rows:
        shown = {k: v for k, v in row.items() if k not in ("seq_len", "length_key", "trained_len") and v is not None}
        values = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        out.print(f"[bold]seqbench eval[/] {escape(args.run_id)} (test split, {escape(str(row['length_key']))} "
                  f"{row['seq_len']}): " + escape(values), soft_wrap=True)
    return 0 if all(row["status"] == Status.OK for row in rows) else 1


def print_row(out, row: dict) -> None:
    table = Table(show_header=False, title=f"result {escape(row['run_id'])}", title_justify="left")
    for key in ("status", "accuracy", "accuracy_hard", "chance", "perplexity", "mae", "loss", "val_accuracy",
                "val_perplexity", "gate_rate", "gate_rate_hard", "attn_flop_fraction_hard", "lambda",
                "tokens_per_sec", "n_params", "param_budget", "state_size", "steps", "wall_time_s", "device",
                "threads", "kernels"):
        value = row.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    table.add_row("written to", escape(row["path"]))
    out.print(table)
    lines = headline(row)
    for line in lines[:1]:
        out.print(escape(line))
    if hard_gate_collapsed(row):
        out.print(f"[bold yellow]warning:[/] {escape(lines[1])}", soft_wrap=True)
