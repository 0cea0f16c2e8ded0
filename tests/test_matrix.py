"""End to end through the runner: every registered model x task pair at the smoke preset writes an ok row."""

from __future__ import annotations

import math

import pytest

from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import build_registries
from seqbench.results import read_runs
from seqbench.train.runner import run

_REGISTRIES = build_registries()
PAIRS = [(m.name, v, t.name) for m in _REGISTRIES.models for v in m.variants for t in _REGISTRIES.tasks
         if m.inputs & t.views]


@pytest.mark.parametrize("model, variant, task", PAIRS, ids=[f"{m}-{v}-{t}" for m, v, t in PAIRS])
def test_smoke_run_is_ok(model, variant, task, tmp_path, smoke_overrides):
    config = resolve_run_config(_REGISTRIES, model, task, variant=variant, preset="smoke",
                                overrides=smoke_overrides(task))
    row = run(_REGISTRIES, config, RunOptions(results_dir=tmp_path, progress=False))
    assert row["status"] == "ok", row.get("error")
    assert 0 <= row["accuracy"] <= 1 and math.isfinite(row["loss"])
    assert len(row["data_fingerprint"]) == 16
    if _REGISTRIES.tasks.get(task).metric == "perplexity":
        assert row["perplexity"] == pytest.approx(math.exp(row["loss"]), rel=1e-6)
    table = read_runs(tmp_path)
    assert table.num_rows == 1 and table.column("run_id")[0].as_py() == row["run_id"]
