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

import errno
import sys

from rich.markup import escape

from seqbench.cli.output import console
from seqbench.cli.parser import build_parser
from seqbench.errors import RunInterrupted, UserError
from seqbench.process import watching
from seqbench.registry import load_target

EXIT_USER_ERROR = 2
EXIT_FAILED = 1  # a run that did not succeed (failed, diverged) or a full disk
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with watching():  # SIGTERM and SIGINT become RunInterrupted (seqbench.process.SignalWatch)
            return load_target(args.handler)(args)
    except UserError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USER_ERROR
    except RunInterrupted as exc:
        console(stderr=True).print(f"[bold yellow]stopped:[/] {escape(exc.describe())}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:  # before the handler was installed
        return 130
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        # every writer removes its temp file and every claim is released on the way out: nothing is left
        console(stderr=True).print(f"[bold red]error:[/] disk full ({escape(exc.strerror or str(exc))}"
                                   f"{escape(f': {exc.filename}') if exc.filename else ''}); nothing was "
                                   "written for what was running: free space and run it again", soft_wrap=True)
        return EXIT_FAILED
    except BrokenPipeError:  # `seqbench list --json | head` is not an error
        sys.stderr.close()
        return 0
