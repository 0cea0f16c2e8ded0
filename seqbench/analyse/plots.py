"""Figures from a results folder (nothing is re-run), as PNGs:

- ``curves_<task>_<preset>.png``: validation accuracy and gate rate (solid), their hard-gated
  twins (dashed, models with gate modes) against training step (the paper's Fig. 19), mean over seeds with a min-max
  band, and the task's chance level (the rows' ``chance``: majority-class rate);
- ``accuracy_vs_<key>_<task>_<preset>.png``: accuracy against the one task setting that a sweep's
  grid varied (ring size ``num_nodes`` for ring distance: the paper's Fig. 7), mean ± 95% t-interval,
  with the chance level at each value;
- ``throughput_<mode>_<preset>.png``: tokens/s against sequence length on log-log axes (Fig. 24).

A model keeps its colour in every figure (``model_colour``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqbench.analyse.stats import mean_interval
from seqbench.analyse.tuning import tune
from seqbench.errors import UserError
from seqbench.results import (
    Status,
    config_settings,
    iter_rows,
    read_bench,
    read_cells,
    read_curves,
    read_evals,
    varying_keys,
)


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


# The paper's colours where it has them (Fig. 19: RNN red, Transformer blue, TGN green; Fig. 24: Mamba purple).
_COLOURS = {"gru": "tab:red", "transformer": "tab:blue", "tgn": "tab:green", "mamba": "tab:purple",
            "gcn": "tab:orange", "graphgps": "tab:olive"}
_SPARE = ("tab:brown", "tab:pink", "tab:cyan", "tab:gray")


def model_colour(model: str) -> str:
    """One colour per model in every figure (a plugin's model gets a spare colour chosen by its name)."""
    return _COLOURS.get(model) or _SPARE[sum(map(ord, model)) % len(_SPARE)]


def curves_file(task: str, preset: str) -> str:
    return f"curves_{_safe(task)}_{_safe(preset)}.png"


def setting_file(key: str, task: str, preset: str) -> str:
    return f"accuracy_vs_{_safe(key)}_{_safe(task)}_{_safe(preset)}.png"


def throughput_file(mode: str, preset: str) -> str:
    return f"throughput_{_safe(mode)}_{_safe(preset)}.png"


def _chance_of(rows: list[dict]) -> float | None:
    values = [r["chance"] for r in rows if r.get("chance") is not None]
    return sum(values) / len(values) if values else None


def make_plots(results: Path, out: Path, on_unreadable=None, note: Callable[[str], None] = print,
               preset: str | None = None, tune: tuple[str, ...] = ()) -> list[Path]:
    """Write every figure the results support (of one preset, if given); return their paths.

    With ``tune`` (e.g. ``("train.lr",)``) each model's runs are first narrowed to the values chosen on
    validation (:func:`seqbench.analyse.tuning.tune`), so a curve or point is the mean over seeds of one
    configuration, the same runs a leaderboard or a claim's verdict uses, never a mix of learning rates.
    """
    plt = _pyplot()
    runs, collapsed = read_cells(results, on_unreadable=on_unreadable)
    if collapsed:
        note(f"{collapsed} duplicate run row(s) collapsed: one per (config, seed), the newest ok row")
    runs = [r for r in runs if preset is None or r["preset"] == preset]
    runs, tuned = _tuned(runs, tune, note)
    evals = list(iter_rows(read_evals(results, on_unreadable=on_unreadable)))
    curves = list(iter_rows(read_curves(results, on_unreadable=on_unreadable)))
    bench = [r for r in iter_rows(read_bench(results, on_unreadable=on_unreadable))
             if preset is None or r["preset"] == preset]
    if not (runs or curves or bench):
        return []  # nothing to draw: create no folder for it
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    written += plot_curves(plt, runs, curves, out, note, tuned)
    written += plot_accuracy_vs_setting(plt, runs, out, note, tuned)
    written += plot_accuracy_vs_length(plt, runs, evals, out, note)
    written += plot_throughput(plt, bench, out, note)
    return written


def _tuned(runs: list[dict], keys: tuple[str, ...], note: Callable[[str], None]) -> tuple[list[dict], tuple[str, ...]]:
    """The runs of the validation-chosen values of ``keys`` (those any run has; all runs without any), and
    those keys."""
    keys = tuple(k for k in dict.fromkeys(keys) if any(k in config_settings(r) for r in runs))
    if not keys:
        return runs, keys
    chosen = tune(runs, keys)
    if chosen.skipped:
        note(f"{len(chosen.skipped)} group(s) of runs lack the validation metrics to choose {', '.join(keys)} "
             "on: left out of the figures")
    return chosen.rows, keys


def _chosen(run: dict, keys: tuple[str, ...]) -> str:
    """``train.lr=0.003``: a tuned run's chosen values, for its series label."""
    settings = config_settings(run)
    return ", ".join(f"{k}={settings.get(k)}" for k in keys)


# ------------------------------------------------------------------------ training curves


def plot_curves(plt, runs: list[dict], curves: list[dict], out: Path, note, tuned: tuple[str, ...] = ()) -> list[Path]:
    from matplotlib.ticker import MaxNLocator  # steps are whole numbers: no 12.5 ticks

    by_run = {r["run_id"]: r for r in runs if r["status"] == Status.OK}
    # A sweep's grid axis (e.g. ring size) splits a model's runs into one series per value.
    per_task: dict[tuple, list[dict]] = defaultdict(list)
    for run in by_run.values():
        per_task[(run["task"], run["preset"])].append(run)
    axis = {key: varying_task_key(members) for key, members in per_task.items()}
    label_of_run = {}  # "key=value" of the grid axis, parsed once per run rather than once per curve point
    for run_id, run in by_run.items():
        key = axis[(run["task"], run["preset"])]
        label_of_run[run_id] = ", ".join(filter(None, [f"{key}={_task_settings(run)[key]}" if key else "",
                                                       _chosen(run, tuned)]))
    # (task, preset) -> (model, variant, setting) -> metric -> step -> [value per seed]
    data: dict[tuple, dict[tuple, dict[str, dict[float, list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for point in curves:
        run = by_run.get(point["run_id"])
        if run is None:  # the curve of a run without a row (killed mid-write) or of a failed run
            continue
        setting = label_of_run[run["run_id"]]
        series = data[(run["task"], run["preset"])][(run["model"], run["variant"], setting)]
        for metric in ("accuracy", "accuracy_hard", "gate_rate", "gate_rate_hard"):
            if point.get(metric) is not None:
                series[metric][point["step"]].append(point[metric])
    written = []
    for (task, preset), models in sorted(data.items()):
        chance = _chance_of(per_task[(task, preset)])
        panels = [("accuracy", ("accuracy", "accuracy_hard"))]
        if any("gate_rate" in s for s in models.values()):
            panels.append(("gate_rate", ("gate_rate", "gate_rate_hard")))
        fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 4.8), squeeze=False,
                                 layout="constrained")
        for ax, (panel, metrics) in zip(axes[0], panels, strict=True):
            for (model, variant, setting), series in sorted(models.items(), key=_natural):
                for metric in metrics:
                    if metric in series:
                        _plot_series(ax, series[metric], model, variant, setting, metric)
            if panel == "accuracy" and chance is not None:
                ax.axhline(chance, color="black", linestyle=":", linewidth=1,
                           label=f"chance (majority class) {chance:.3f}")
            ax.set_xlabel("training step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            quantity = "validation accuracy" if panel == "accuracy" else "gate rate (fraction of gates > threshold)"
            ax.set_ylabel(f"{quantity}\nsolid: soft gates, dashed: hard-gated")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        how = f"; {', '.join(tuned)} chosen on validation" if tuned else ""
        # two short lines: one panel (an ungated model's task) is too narrow for one long line
        fig.suptitle(f"{task} (preset {preset}): validation curves\nmean over seeds, band = min–max{how}",
                     fontsize=11)
        path = out / curves_file(task, preset)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if not data:
        note("no training curves to plot (no ok runs with curves)")
    return written


def _plot_series(ax, by_step: dict[float, list[float]], model: str, variant: str, setting: str, metric: str) -> None:
    steps = sorted(by_step)
    values = [by_step[s] for s in steps]
    mean = [sum(v) / len(v) for v in values]
    seeds = max(len(v) for v in values)
    name = _series_label(model, variant) + (f", {setting}" if setting else "")
    hard = metric.endswith("_hard")
    if hard:
        name += " hard-gated"
    colour = model_colour(model)
    ax.plot(steps, mean, marker="x" if hard else "o", markersize=4 if hard else 3, color=colour,
            linestyle="--" if hard else "-", label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
    if seeds > 1:
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.12,
                        linewidth=0)


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


def plot_accuracy_vs_setting(plt, runs: list[dict], out: Path, note, tuned: tuple[str, ...] = ()) -> list[Path]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in runs:
        if row["status"] == Status.OK and row.get("accuracy") is not None:
            groups[(row["task"], row["preset"])].append(row)
    written = []
    for (task, preset), rows in sorted(groups.items()):
        key = varying_task_key(rows)
        if key is None:
            continue
        points: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            points[(row["model"], row["variant"])][_task_settings(row)[key]].append(row["accuracy"])
        fig, ax = plt.subplots(figsize=(6.8, 4.8), layout="constrained")
        for (model, variant), by_x in sorted(points.items()):
            xs = sorted(by_x)
            stats = [mean_interval(by_x[x]) for x in xs]
            low, high = min(s.n for s in stats), max(s.n for s in stats)
            seeds = f"{low}" if low == high else f"{low}–{high}"
            ax.errorbar(xs, [s.mean for s in stats], yerr=[s.half_width or 0.0 for s in stats], marker="o",
                        capsize=3, color=model_colour(model),
                        label=f"{_series_label(model, variant)} ({seeds} seed{'s' if high > 1 else ''})")
        chance: dict[float, list[dict]] = defaultdict(list)
        for row in rows:
            chance[_task_settings(row)[key]].append(row)
        xs = sorted(x for x in chance if _chance_of(chance[x]) is not None)
        if xs:
            ax.plot(xs, [_chance_of(chance[x]) for x in xs], color="black", linestyle=":", marker="_",
                    label="chance (majority class) per value")
        ax.set_xticks(sorted({x for by_x in points.values() for x in by_x}))
        ax.set_xlabel("ring size (nodes)" if key == "num_nodes" else f"task.{key}")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{task} (preset {preset}): test accuracy against task.{key}\n"
                     "mean ± 95% t-interval over seeds"
                     + (f"; {', '.join(tuned)} chosen on validation at each value" if tuned else ""), fontsize=10)
        path = out / setting_file(key, task, preset)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if not written:
        note("no accuracy-against-setting plot: no task has runs that differ in exactly one numeric setting "
             "(sweep one with --grid task.KEY=V1,V2,...)")
    return written


# --------------------------------------------------------- accuracy against evaluation length


def plot_accuracy_vs_length(plt, runs: list[dict], evals: list[dict], out: Path, note) -> list[Path]:
    """Test accuracy against the length tested at (``--eval-lengths``), the training length included:
    one figure per (task, preset), one line per model and setting, mean ± 95% t-interval over seeds."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for row in evals:
        by_run[row["run_id"]].append(row)
    figures: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if run["status"] == Status.OK and by_run.get(run["run_id"]):
            figures[(run["task"], run["preset"])].append(run)
    written, unsupported = [], 0
    for (task, preset), members in sorted(figures.items()):
        settings = [{k: v for k, v in config_settings(r).items() if k != "model.variant"} for r in members]
        # a model's runs that differ in a setting (a learning-rate grid, a position scheme) are separate lines
        per_model: dict[str, list[dict]] = defaultdict(list)
        for run, setting in zip(members, settings, strict=True):
            per_model[run["model"]].append(setting)
        shown = {model: sorted(k for k in varying_keys(same) if not k.startswith("task."))
                 for model, same in per_model.items()}
        points: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        key_name, trained = None, set()
        for run, setting in zip(members, settings, strict=True):
            label = ", ".join(f"{k}={setting.get(k)}" for k in shown[run["model"]])
            series = points[(run["model"], run["variant"], label)]
            first = by_run[run["run_id"]][0]
            key_name = first["length_key"]
            trained.add(first["trained_len"])
            series[first["trained_len"]].append(run["accuracy"])
            for row in by_run[run["run_id"]]:
                if row["status"] == Status.OK and row["seq_len"] != first["trained_len"]:
                    series[row["seq_len"]].append(row["accuracy"])
                unsupported += row["status"] != Status.OK
        fig, ax = plt.subplots(figsize=(6.4 + (3.6 if len(points) > 6 else 0), 4.4))
        for (model, variant, label), by_len in sorted(points.items()):
            xs = sorted(by_len)
            stats = [mean_interval(by_len[x]) for x in xs]
            name = _series_label(model, variant) + (f", {label}" if label else "")
            ax.errorbar(xs, [s.mean for s in stats], yerr=[s.half_width or 0.0 for s in stats], marker="o",
                        capsize=3, label=f"{name} ({max(s.n for s in stats)} seeds)")
        for x in sorted(trained):
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"evaluation length (task.{key_name}); dotted: training length")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if len(points) > 6:  # a grid's many lines: the legend beside the axes, not over the data
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            ax.legend(fontsize=8)
        ax.set_title(f"{task} (preset {preset}): test accuracy against evaluation length\n"
                     "mean ± 95% t-interval over seeds", fontsize=10)
        fig.tight_layout()
        path = out / f"accuracy_vs_length_{_safe(task)}_{_safe(preset)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if unsupported:
        note(f"{unsupported} evaluation(s) at other lengths were unsupported or failed: no point is drawn for them")
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
        fig, ax = plt.subplots(figsize=(7.2, 4.8), layout="constrained")
        for (model, variant, forced, device), points in sorted(series.items(), key=lambda kv: str(kv[0])):
            points.sort(key=lambda r: r["seq_len"])
            ok = [r for r in points if r["status"] == Status.OK]
            failed = [f"{r['status']} at {r['seq_len']}" for r in points if r["status"] != Status.OK]
            label = _series_label(model, variant)
            if forced is not None:
                label += f" (gate rate forced {forced:.0%})"
            if len(devices) > 1:
                label += f" [{device}]"
            if failed:
                label += f" — {', '.join(failed)}"
            if ok:
                ax.plot([r["seq_len"] for r in ok], [r["tokens_per_sec"] for r in ok], marker="o", label=label,
                        color=model_colour(model), linestyle="-" if forced is None else "--")
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
        path = out / throughput_file(mode, preset)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if not groups:
        note("no throughput plot: no bench rows (run `seqbench bench` first)")
    return written
