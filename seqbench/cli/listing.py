"""``seqbench list``: the registered models and tasks, and the plugins that failed to load.

On the start-up path like ``--help``: it imports the registry and rich only, never torch.
"""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from seqbench.cli.output import console, load_registries


def cmd_list(args: argparse.Namespace) -> int:
    registries = load_registries(warn_broken=False)  # listed below instead
    models = [{"name": s.name, "description": s.description, "variants": list(s.variants),
               "inputs": sorted(s.inputs), "plugin": registries.models.origin(s.name)} for s in registries.models]
    tasks = [{"name": s.name, "description": s.description, "version": s.version, "metric": s.metric,
              "views": sorted(s.views), "plugin": registries.tasks.origin(s.name)} for s in registries.tasks]
    if args.json:
        print(json.dumps({"models": models, "tasks": tasks, "broken_plugins": registries.broken_plugins}, indent=2))
        return 0
    out = console()
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
        out.print(table)
    if registries.broken_plugins:
        table = Table(title="Broken plugins (skipped)", title_justify="left", title_style="bold red")
        table.add_column("plugin", style="bold")
        table.add_column("error")
        for name, error in registries.broken_plugins.items():
            table.add_row(escape(name), escape(error))
        out.print(table)
    return 0
