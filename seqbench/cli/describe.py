"""``seqbench describe``: a task's data (``--task``) or a model's config keys (``--model``)."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from seqbench.analyse.describe import describe_model, describe_task
from seqbench.cli.output import console, load_registries
from seqbench.configure.options import check_seed
from seqbench.errors import UserError


def cmd_describe(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    if args.model:
        return _describe_model(args)
    if not args.task:
        raise UserError("describe needs --task T (its data) or --model M (its config keys)")
    report = describe_task(load_registries(), args.task, preset=args.preset, seed=args.seed, overrides=args.set or [])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
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
    console().print(table)
    return 0


def _describe_model(args: argparse.Namespace) -> int:
    if args.task:
        raise UserError("describe takes --model or --task, not both")
    report = describe_model(load_registries(), args.model, variant=args.variant)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
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
    console().print(table)
    return 0
