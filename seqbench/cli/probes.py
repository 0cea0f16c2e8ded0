"""``seqbench probes``: the budget probes' table (seqbench.analyse.probes) from a probe sweep's rows."""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from seqbench.analyse import probes
from seqbench.cli.output import console, warn_unreadable
from seqbench.configure.options import check_readable_results, check_writable_dir, path_option
from seqbench.errors import UserError
from seqbench.results import atomic_write_text, iter_rows, read_runs


def cmd_probes(args: argparse.Namespace) -> int:
    results = path_option(args.results)
    check_readable_results(results)
    if not (results / "runs").is_dir():
        raise UserError(f"no runs in {results}/runs: run the probe sweeps first, e.g. "
                        "`seqbench sweep experiments/probes/mqar.toml`")
    text = probes.render(list(iter_rows(read_runs(results, on_unreadable=warn_unreadable))), seed=args.seed)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = path_option(args.out, "--out")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a markdown file, e.g. --out {out / 'probes.md'}")
    check_writable_dir(out.parent, "--out")
    if out.exists():  # a document with a probes section gets only that section replaced
        try:
            document = out.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --out {out}: {exc}; pick a readable markdown file") from None
        if probes.SECTION_BEGIN in document:
            try:
                text = probes.into_section(document, text)
            except ValueError:
                raise UserError(f"--out {out} opens a probes section but never closes it: add the line "
                                f"{probes.SECTION_END} after it") from None
        else:
            raise UserError(f"--out {out} exists and has no probes section: put the line {probes.SECTION_BEGIN} "
                            f"and, below it, {probes.SECTION_END} where the table goes, or write a new file")
    try:
        atomic_write_text(text, out)
    except OSError as exc:
        raise UserError(f"cannot write --out {out}: {exc.strerror or exc}; choose another file") from None
    console().print(f"wrote {escape(str(out))}")
    return 0
