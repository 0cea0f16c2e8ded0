"""``seqbench describe``: what a task's training split looks like, so a reader knows the chance level;
and (``--model``) every config key of a model, so nobody has to misspell one to learn the valid ones.

Builds the task at a preset (with ``--set task.*`` overrides), loads or generates its train split
and reports its size, sequence length, label distribution, majority-class rate and how long the
split took to generate (or to load from the cache).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import typing
from collections import Counter
from typing import Any

from seqbench.configure.config import parse_overrides
from seqbench.configure.resolve import resolve_model_config, resolve_task_config, task_info
from seqbench.errors import UserError
from seqbench.registry import PRESETS, Registries, check_preset, load_spec_target
from seqbench.train.data import build_task_data

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


# -------------------------------------------------------------------------------- models


def config_comments(cls: type) -> dict[str, str]:
    """Each field's comment in the dataclass's source: the ``# ...`` on its line, else the comment lines
    right above it (how the built-in configs document their fields)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL, or shipped without .py files)
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        if not text:
            n = node.lineno - 1
            while n in comments and lines[n - 1].lstrip().startswith("#"):
                text.insert(0, comments[n])
                n -= 1
        if text:
            out[node.target.id] = " ".join(text)
    return out


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(json.dumps(v) for v in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _plain(value: Any) -> Any:
    """JSON-friendly (tuples as lists), as the value appears in a row's config_json."""
    return json.loads(json.dumps(value))


def describe_model(registries: Registries, model: str, variant: str | None = None) -> dict[str, Any]:
    """Every ``model.*`` key of ``model``: type, default, its value at each preset (for ``variant``), comment."""
    spec = registries.models.get(model)
    if variant is None:
        variant = spec.variants[0]
    elif variant not in spec.variants:
        raise UserError(f"model {model!r} has no variant {variant!r}: choose one of {', '.join(spec.variants)}")
    cls = load_spec_target(spec, "config")
    hints = typing.get_type_hints(cls)
    comments = config_comments(cls)
    resolved = {preset: dataclasses.asdict(resolve_model_config(spec, preset, variant, {})) for preset in PRESETS}
    keys = [{"key": f"model.{f.name}", "type": type_name(hints[f.name]), "default": _plain(_default(f)),
             "presets": {preset: _plain(resolved[preset][f.name]) for preset in PRESETS},
             "comment": comments.get(f.name, "")}
            for f in dataclasses.fields(cls) if f.init]
    return {"model": model, "variant": variant, "variants": list(spec.variants), "config": cls.__name__,
            "keys": keys}
