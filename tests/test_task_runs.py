"""Every registered model trains and tests end to end on listops, assoc_recall and wikitext at the smoke preset."""

from __future__ import annotations

import math
import sys

import pytest

from seqbench.registry import build_registries
from seqbench.runner import RunOptions, resolve_run_config, run

REGISTRIES = build_registries()
TASKS = ["listops", "assoc_recall", "wikitext"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", REGISTRIES.models.names())
def test_smoke_run(model, task, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "datasets", None)
    overrides = []
    if task == "wikitext":
        folder = tmp_path / "wt"
        folder.mkdir()
        for name in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"):
            (folder / name).write_text(" the cat sat on the mat . \n the dog ate . \n" * 30, encoding="utf-8")
        overrides = [f"task.data_dir={folder}"]
    spec = REGISTRIES.models.get(model)
    if not ({"tokens"} & spec.inputs):
        pytest.skip(f"{model} takes no token input")  # graph-only models run on graph tasks
    config = resolve_run_config(REGISTRIES, model, task, preset="smoke", overrides=overrides)
    row = run(REGISTRIES, config, RunOptions(results_dir=tmp_path / "results", progress=False))
    assert row["status"] == "ok"
    assert 0 <= row["accuracy"] <= 1 and math.isfinite(row["loss"])
    assert len(row["data_fingerprint"]) == 16
    if task == "wikitext":
        assert row["perplexity"] == pytest.approx(math.exp(row["loss"]), rel=1e-6)
