"""``seqbench describe``: what a task's training split looks like, so a reader knows the chance level.

Builds the task at a preset (with ``--set task.*`` overrides), loads or generates its train split
and reports its size, sequence length, label distribution, majority-class rate and how long the
split took to generate (or to load from the cache).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from seqbench.config import parse_overrides
from seqbench.errors import UserError
from seqbench.registry import Registries, check_preset
from seqbench.runner import resolve_task_config

TOP_LABELS = 20  # label distributions with more classes (language modelling) show only the most frequent


def describe_task(registries: Registries, task: str, preset: str = "default", seed: int = 0,
                  overrides: list[str] = ()) -> dict[str, Any]:
    spec = registries.tasks.get(task)
    check_preset(preset)
    sets = parse_overrides(list(overrides))
    if sets["model"] or sets["train"]:
        others = [f"{section}.{key}" for section in ("model", "train") for key in sets[section]]
        raise UserError(f"describe takes only task.* overrides, not {', '.join(others)} (it builds no model and "
                        "trains nothing)")
    config = resolve_task_config(spec, preset, sets["task"])
    from seqbench.data import build_task_data, task_info

    data = build_task_data(spec, config, seed=seed, batch_size=1)
    train = data.split_data("train")
    info = task_info(spec, data)
    source, seconds = data.load_report["train"]
    return {
        "task": task, "version": spec.version, "preset": preset, "seed": seed, "metric": info.metric,
        "config": dataclasses.asdict(config),
        "train_examples": int(train["tokens"].shape[0]), "seq_len": info.seq_len, "vocab_size": info.vocab_size,
        "num_classes": info.num_classes, "target": info.target,
        **label_distribution(train["targets"], info.ignore_index, info.num_classes),
        "train_split_from": source, "train_split_seconds": round(seconds, 3),
    }


def chance_level(targets, ignore_index: int) -> float | None:
    """The majority-class rate of the scored labels: the accuracy of always guessing their commonest class
    (a run's ``chance`` column, on its test split).
    (torch.bincount, so a language-modelling split of millions of tokens costs milliseconds.)"""
    import torch

    labels = targets.reshape(-1)
    labels = labels[labels != ignore_index]
    if labels.numel() == 0:
        return None
    return float(torch.bincount(labels).max()) / labels.numel()


def label_distribution(targets, ignore_index: int, num_classes: int) -> dict[str, Any]:
    """Scored labels only: a class's share, the majority class and its rate (the majority-guess accuracy)."""
    labels = targets.reshape(-1)
    labels = labels[labels != ignore_index]
    counts = Counter(labels.tolist())
    total = sum(counts.values())
    shown = counts.most_common(TOP_LABELS) if num_classes > TOP_LABELS else sorted(counts.items())
    majority, majority_count = counts.most_common(1)[0] if counts else (None, 0)
    return {
        "scored_labels": total,
        "label_distribution": {str(label): round(count / total, 6) for label, count in shown},
        "label_distribution_shown": "top" if num_classes > TOP_LABELS else "all",
        "majority_class": majority,
        "majority_class_rate": majority_count / total if total else None,
    }
