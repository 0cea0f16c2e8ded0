"""The ``seqbench`` command line.

Start-up stays light (the import rule in ``seqbench/__init__.py``): :mod:`seqbench.cli.parser` holds
every command's arguments and names each command's handler as a ``"module:function"`` target; ``main``
imports that module only when its command runs, so ``--help``, a mistyped flag and ``list`` never import
torch or Lightning. One module per command group: ``listing``, ``describe``, ``run`` (run, eval),
``bench``, ``sweep``, ``analyse`` (leaderboard, plot, report); ``output`` is what they all print through.

A user's mistake (a :class:`UserError`) prints one message and exits 2. Text that came from a user or a
file (names, paths, values, messages quoting them) goes through ``rich.markup.escape`` before rich
prints it, so ``[plot]`` or ``[/]`` is shown as typed, never read as markup.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from seqbench.cli.output import console
from seqbench.cli.parser import build_parser
from seqbench.errors import UserError
from seqbench.registry import load_target

EXIT_USER_ERROR = 2

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return load_target(args.handler)(args)
    except UserError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `seqbench list --json | head` is not an error
        sys.stderr.close()
        return 0
