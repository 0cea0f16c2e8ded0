"""``seqbench bench``: tokens/s, peak memory and MFU against sequence length."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from seqbench.bench import BenchOptions, run_bench, speedups
from seqbench.cli.output import console, load_registries, warn
from seqbench.cli.run import param_budget
from seqbench.configure.options import check_writable_dir, path_option, pick_accelerator
from seqbench.errors import UserError
from seqbench.results import Status
from seqbench.train.threads import apply_threads


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
    options = BenchOptions(
        models=_csv(args.models, flag="--models"), variants=_csv(args.variant, flag="--variant"),
        lengths=_csv(args.lengths, int, flag="--lengths"), modes=_csv(args.mode, flag="--mode"), preset=args.preset,
        overrides=tuple(args.set or ()), tokens_per_step=args.tokens_per_step, warmup=args.warmup,
        repeats=args.repeats, timeout_s=args.timeout, gate_rate=args.gate_rate, device=args.device,
        threads=args.threads, results_dir=path_option(args.results), params=param_budget(args),
        missing_only=args.missing_only, precisions=_csv(args.precision, flag="--precision"))
    pick_accelerator(options.device)
    check_writable_dir(options.results_dir, "--results", subdirs=("bench",))
    apply_threads(args.threads)
    out = console()
    table = Table(title=escape(f"seqbench bench (preset {options.preset}) -> {options.results_dir}/bench"),
                  title_justify="left")
    mixed = options.precisions != ("32-true",)
    columns = ("model", "variant", "mode", "seq_len", *(("precision",) if mixed else ()), "batch", "status",
               "tokens/s", *(("vs fp32",) if mixed else ()), "peak mem", "MFLOP/token", "MFU", "gate rate")
    for name in columns:
        table.add_column(name, justify="left" if name in ("model", "variant", "mode", "precision", "status")
                         else "right")
    statuses, rows = [], []
    for row in run_bench(load_registries(), options,
                         on_row=lambda r: out.print(escape(f"  {r['model']}/{r['variant']} {r['mode']} "
                                                               f"L={r['seq_len']} {r['dtype']}: {r['status']}"),
                                                    style="dim"),
                         note=warn):
        statuses.append(row["status"])
        rows.append(row)
    ratios = speedups(rows)  # each bf16 row over the fp32 row of the same call
    for row in rows:
        if row.get("forced_gate_rate") is not None:
            gate = f"{row['forced_gate_rate']:.3f} (forced)"
        else:
            gate = "—" if row.get("gate_rate") is None else f"{row['gate_rate']:.3f} (learned)"
        precision = (row["dtype"],) if mixed else ()
        ratio = (_num(ratios.get(row["bench_id"]), ".2f", "x"),) if mixed else ()
        table.add_row(escape(row["model"]), escape(row["variant"]), row["mode"], str(row["seq_len"]), *precision,
                      str(row["batch_size"]),
                      row["status"], _num(row.get("tokens_per_sec"), ",.0f"), *ratio,
                      _num(row.get("peak_mem_bytes") and row["peak_mem_bytes"] / 2**20, ",.0f", " MiB"),
                      _num(row.get("flops_per_token") and row["flops_per_token"] / 1e6, ",.3f"),
                      _num(row.get("mfu"), ".1%"), gate)
    if statuses:
        out.print(table)
    else:  # --missing-only found everything measured
        out.print(escape(f"nothing to measure: {options.results_dir} already holds an ok row of each"))
    return 0 if all(s in (Status.OK, Status.OOM, Status.TIMEOUT) for s in statuses) else 1


def _num(value, fmt: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{suffix}"
