"""Figures from a results folder (nothing is re-run), as PNGs:

- ``curves_<task>_<preset>.png``: accuracy and gate rate against training step (the paper's Fig. 19),
  mean over seeds with a min-max band;
- ``accuracy_vs_<key>_<task>_<preset>.png``: accuracy against the one task setting that a sweep's
  grid varied (ring size ``num_nodes`` for ring distance: the paper's Fig. 7), mean ± 95% t-interval;
- ``throughput_<mode>_<preset>.png``: tokens/s against sequence length on log-log axes (Fig. 24).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqbench.errors import UserError
from seqbench.leaderboard import mean_interval
from seqbench.results import config_settings, iter_rows, read_curves, read_runs, varying_keys


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("plots need matplotlib, a seqbench dependency: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    return plt


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")


def _natural(item) -> tuple:
    """Series in a readable order: by model, then by the numeric value of their setting."""
    (model, variant, setting), _ = item
    value = setting.partition("=")[2]
    try:
        return (model, variant, float(value), setting)
    except ValueError:
        return (model, variant, float("inf"), setting)


def _series_label(model: str, variant: str) -> str:
    return model if variant in (None, "default") else f"{model}/{variant}"


def make_plots(results: Path, out: Path, on_unreadable=None, note: Callable[[str], None] = print) -> list[Path]:
    """Write every figure the results support; return their paths."""
    plt = _pyplot()
    from seqbench.bench import read_bench

    runs = list(iter_rows(read_runs(results, on_unreadable=on_unreadable)))
    curves = list(iter_rows(read_curves(results, on_unreadable=on_unreadable)))
    bench = list(iter_rows(read_bench(results, on_unreadable=on_unreadable)))
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    written += plot_curves(plt, runs, curves, out, note)
    written += plot_accuracy_vs_setting(plt, runs, out, note)
    written += plot_throughput(plt, bench, out, note)
    return written


# ------------------------------------------------------------------------ training curves


def plot_curves(plt, runs: list[dict], curves: list[dict], out: Path, note) -> list[Path]:
    by_run = {r["run_id"]: r for r in runs if r["status"] == "ok"}
    # A sweep's grid axis (e.g. ring size) splits a model's runs into one series per value.
    per_task: dict[tuple, list[dict]] = defaultdict(list)
    for run in by_run.values():
        per_task[(run["task"], run["preset"])].append(run)
    axis = {key: varying_task_key(members) for key, members in per_task.items()}
    label_of_run = {}  # "key=value" of the grid axis, parsed once per run rather than once per curve point
    for run_id, run in by_run.items():
        key = axis[(run["task"], run["preset"])]
        label_of_run[run_id] = f"{key}={_task_settings(run)[key]}" if key else ""
    # (task, preset) -> (model, variant, setting) -> metric -> step -> [value per seed]
    data: dict[tuple, dict[tuple, dict[str, dict[float, list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for point in curves:
        run = by_run.get(point["run_id"])
        if run is None:  # the curve of a run without a row (killed mid-write) or of a failed run
            continue
        setting = label_of_run[run["run_id"]]
        series = data[(run["task"], run["preset"])][(run["model"], run["variant"], setting)]
        for metric in ("accuracy", "gate_rate"):
            if point.get(metric) is not None:
                series[metric][point["step"]].append(point[metric])
    written = []
    for (task, preset), models in sorted(data.items()):
        metrics = ["accuracy"] + (["gate_rate"] if any("gate_rate" in s for s in models.values()) else [])
        fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 4.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for (model, variant, setting), series in sorted(models.items(), key=_natural):
                if metric not in series:
                    continue
                steps = sorted(series[metric])
                values = [series[metric][s] for s in steps]
                mean = [sum(v) / len(v) for v in values]
                seeds = max(len(v) for v in values)
                name = _series_label(model, variant) + (f", {setting}" if setting else "")
                line, = ax.plot(steps, mean, marker="o", markersize=3,
                                label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
                if seeds > 1:
                    ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                                    color=line.get_color(), alpha=0.15, linewidth=0)
            ax.set_xlabel("training step")
            ax.set_ylabel("validation accuracy" if metric == "accuracy"
                          else "gate rate (fraction of gates > threshold)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{task} (preset {preset}): validation curves, mean over seeds, band = min–max")
        fig.tight_layout()
        path = out / f"curves_{_safe(task)}_{_safe(preset)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if not data:
        note("no training curves to plot (no ok runs with curves)")
    return written


# ------------------------------------------------------------- accuracy against a setting


def _task_settings(row: dict[str, Any]) -> dict[str, Any]:
    return {key[len("task."):]: value for key, value in config_settings(row).items() if key.startswith("task.")}


def varying_task_key(rows: list[dict]) -> str | None:
    """The task setting that varies between the rows; ``num_nodes`` (ring size) when several do."""
    settings = [_task_settings(r) for r in rows]
    varying = sorted(k for k in varying_keys(settings) if all(isinstance(s.get(k), (int, float)) for s in settings))
    if "num_nodes" in varying:
        return "num_nodes"
    return varying[0] if len(varying) == 1 else None


def plot_accuracy_vs_setting(plt, runs: list[dict], out: Path, note) -> list[Path]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in runs:
        if row["status"] == "ok" and row.get("accuracy") is not None:
            groups[(row["task"], row["preset"])].append(row)
    written = []
    for (task, preset), rows in sorted(groups.items()):
        key = varying_task_key(rows)
        if key is None:
            continue
        points: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            points[(row["model"], row["variant"])][_task_settings(row)[key]].append(row["accuracy"])
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for (model, variant), by_x in sorted(points.items()):
            xs = sorted(by_x)
            stats = [mean_interval(by_x[x]) for x in xs]
            low, high = min(s.n for s in stats), max(s.n for s in stats)
            seeds = f"{low}" if low == high else f"{low}–{high}"
            ax.errorbar(xs, [s.mean for s in stats], yerr=[s.half_width or 0.0 for s in stats], marker="o",
                        capsize=3, label=f"{_series_label(model, variant)} ({seeds} seed{'s' if high > 1 else ''})")
        ax.set_xticks(sorted({x for by_x in points.values() for x in by_x}))
        ax.set_xlabel("ring size (nodes)" if key == "num_nodes" else f"task.{key}")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{task} (preset {preset}): test accuracy against task.{key}\n"
                     "mean ± 95% t-interval over seeds", fontsize=10)
        fig.tight_layout()
        path = out / f"accuracy_vs_{_safe(key)}_{_safe(task)}_{_safe(preset)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if not written:
        note("no accuracy-against-setting plot: no task has runs that differ in exactly one numeric setting "
             "(sweep one with --grid task.KEY=V1,V2,...)")
    return written


# ----------------------------------------------------------------------------- throughput


def latest_bench_rows(rows: list[dict]) -> list[dict]:
    """One row per (model, variant, mode, preset, device, forced gate rate, length): the newest."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        key = (row["model"], row["variant"], row["mode"], row["preset"], row["device"], row.get("forced_gate_rate"),
               row["seq_len"])
        if key not in latest or row["started_at"] > latest[key]["started_at"]:
            latest[key] = row
    return list(latest.values())


def plot_throughput(plt, rows: list[dict], out: Path, note) -> list[Path]:
    from matplotlib.ticker import NullLocator

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in latest_bench_rows(rows):
        groups[(row["mode"], row["preset"])].append(row)
    written = []
    for (mode, preset), members in sorted(groups.items()):
        series: dict[tuple, list[dict]] = defaultdict(list)
        for row in members:
            series[(row["model"], row["variant"], row.get("forced_gate_rate"), row["device"])].append(row)
        devices = sorted({row["device"] for row in members})
        fig, ax = plt.subplots(figsize=(6.8, 4.6))
        for (model, variant, forced, device), points in sorted(series.items(), key=lambda kv: str(kv[0])):
            points.sort(key=lambda r: r["seq_len"])
            ok = [r for r in points if r["status"] == "ok"]
            failed = [f"{r['status']} at {r['seq_len']}" for r in points if r["status"] != "ok"]
            label = _series_label(model, variant)
            if forced is not None:
                label += f" (gate rate forced {forced:.0%})"
            if len(devices) > 1:
                label += f" [{device}]"
            if failed:
                label += f" — {', '.join(failed)}"
            if ok:
                ax.plot([r["seq_len"] for r in ok], [r["tokens_per_sec"] for r in ok], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        lengths = sorted({r["seq_len"] for r in members})
        ax.set_xticks(lengths, [f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n) for n in lengths])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("tokens / s")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_title(f"{mode} throughput (preset {preset}) on {', '.join(devices)}\n"
                     "median step, constant tokens per step", fontsize=10)
        fig.tight_layout()
        path = out / f"throughput_{_safe(mode)}_{_safe(preset)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if not groups:
        note("no throughput plot: no bench rows (run `seqbench bench` first)")
    return written
