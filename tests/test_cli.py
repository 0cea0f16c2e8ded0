from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqbench.api import ModelOutput
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.hookspecs import hookimpl
from seqbench.registry import ModelSpec, build_registries
from seqbench.results import RUN_SCHEMA
from seqbench.train.runner import run

SMOKE = ("--task", "mqar", "--preset", "smoke", "--no-progress")


def _rows(results: Path):
    return [pq.read_table(p) for p in sorted((results / "runs").glob("*.parquet"))]


def test_run_writes_exactly_one_row_with_the_schema(cli, tmp_path):
    code, out, _ = cli("run", "--model", "transformer", *SMOKE, "--results", tmp_path)
    assert code == 0, out
    assert '"num_kv_pairs": 4' in out  # the resolved config is printed at the start
    rows = _rows(tmp_path)
    assert len(rows) == 1 and rows[0].num_rows == 1
    table = rows[0]
    assert table.schema.names[: len(RUN_SCHEMA)] == RUN_SCHEMA.names
    row = table.to_pylist()[0]
    assert row["status"] == "ok" and row["model"] == "transformer" and row["task"] == "mqar"
    assert 0.0 <= row["accuracy"] <= 1.0 and row["loss"] > 0 and row["tokens_per_sec"] > 0
    assert row["gate_rate"] is None and row["perplexity"] is None
    assert row["steps"] == 8 and row["n_params"] > 0 and row["data_fingerprint"]
    assert json.loads(row["config_json"])["task_config"]["seq_len"] == 32
    curves = pq.read_table(tmp_path / "curves" / f"{row['run_id']}.parquet").to_pylist()
    assert [c["step"] for c in curves] == [4.0, 8.0]
    assert {"loss", "accuracy"} <= set(curves[0])
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temp files


def test_same_seed_gives_identical_metrics(cli, tmp_path):
    for results in (tmp_path / "a", tmp_path / "b"):
        assert cli("run", "--model", "gru", *SMOKE, "--seed", "7", "--results", results)[0] == 0
    a, b = (_rows(tmp_path / d)[0].to_pylist()[0] for d in ("a", "b"))
    assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]
    assert a["data_fingerprint"] == b["data_fingerprint"]
    assert cli("run", "--model", "gru", *SMOKE, "--seed", "8", "--results", tmp_path / "c")[0] == 0
    c = _rows(tmp_path / "c")[0].to_pylist()[0]
    assert c["loss"] != a["loss"]


class _NaNModel(__import__("torch").nn.Module):
    """Finite on its first batch (a model that is NaN from the start is refused as broken), then NaN."""

    def __init__(self, config, info):
        super().__init__()
        import torch

        self.weight = torch.nn.Parameter(torch.zeros(info.num_classes))
        self.calls = 0

    def forward(self, tokens):
        self.calls += 1
        logits = self.weight.expand(*tokens.shape, -1) * (1.0 if self.calls == 1 else float("nan"))
        return ModelOutput(logits=logits)


class _NaNPlugin:
    @hookimpl
    def seqbench_register_models(self, registry):
        registry.add(ModelSpec("nan_model", build=lambda c, i: _NaNModel(c, i),
                               config="seqbench_plugins.gru:GRUConfig", description="always NaN"))


def test_nan_loss_ends_the_run_as_diverged_with_a_row(tmp_path):
    registries = build_registries(extra_plugins=(_NaNPlugin(),))
    config = resolve_run_config(registries, "nan_model", "mqar", preset="smoke")
    row = run(registries, config, RunOptions(results_dir=tmp_path, progress=False))
    assert row["status"] == "diverged" and row["steps"] == 1
    assert _rows(tmp_path)[0].to_pylist()[0]["status"] == "diverged"


@pytest.mark.parametrize("argv, message", [
    (("run", "--model", "transfomer", *SMOKE), "Did you mean 'transformer'?"),
    (("run", "--model", "gru", "--task", "mqr"), "Did you mean 'mqar'?"),
    (("run", "--model", "gru", "--task", "mqar", "--preset", "huge"), "unknown preset 'huge'"),
    (("run", "--model", "gru", "--task", "mqar", "--variant", "fast"), "has no variant 'fast'"),
    (("run", "--model", "gru", *SMOKE, "--set", "task.seq_len=-1"), "invalid task.seq_len"),
    (("run", "--model", "gru", *SMOKE, "--set", "task.num_kv_pairs=99"), "invalid task.num_kv_pairs"),
    (("run", "--model", "gru", *SMOKE, "--set", "model.d_modl=8"), "Did you mean model.d_model?"),
    (("leaderboard",), "no results in"),
])
def test_user_mistakes_exit_2_with_one_message_and_write_nothing(cli, tmp_path, argv, message):
    results = tmp_path / "results"
    code, out, err = cli(*argv, "--results", results)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out
    assert not results.exists()


def test_cuda_asked_for_without_cuda_is_a_user_error(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = cli("run", "--model", "gru", *SMOKE, "--device", "cuda", "--results", tmp_path / "r")
    assert code == 2 and "no CUDA device" in err
    assert not (tmp_path / "r").exists()


def test_argparse_errors_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "seqbench.cli", "run", "--task", "mqar"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "--model" in proc.stderr


def test_list_json_and_fast_path_imports_no_torch():
    code = ("import sys, json, io, contextlib; from seqbench.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): main(['list', '--json'])\n"
            "data = json.loads(buf.getvalue())\n"
            "assert {'transformer', 'gru'} <= {m['name'] for m in data['models']}, data\n"
            "assert 'mqar' in {t['name'] for t in data['tasks']}\n"
            "heavy = [m for m in ('torch', 'lightning', 'torch_geometric', 'pyarrow') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_leaderboard_aggregates_seeds_with_intervals(cli, tmp_path):
    for seed in (0, 1, 2):
        assert cli("run", "--model", "gru", *SMOKE, "--seed", seed, "--results", tmp_path)[0] == 0
    assert cli("run", "--model", "transformer", *SMOKE, "--results", tmp_path)[0] == 0
    runs = [t.to_pylist()[0] for t in _rows(tmp_path)]
    gru_acc = [r["accuracy"] for r in runs if r["model"] == "gru"]

    code, out, _ = cli("leaderboard", "--results", tmp_path, "--format", "csv")
    assert code == 0
    import csv
    import io

    lines = {r["model"]: r for r in csv.DictReader(io.StringIO(out))}
    assert lines["gru"]["seeds"] == "0;1;2" and lines["transformer"]["seeds"] == "0"
    assert float(lines["gru"]["mean"]) == pytest.approx(sum(gru_acc) / 3) and lines["gru"]["n"] == "3"
    assert float(lines["gru"]["low"]) <= float(lines["gru"]["mean"]) <= float(lines["gru"]["high"])
    assert lines["transformer"]["low"] == "" and lines["transformer"]["interval"] == "none"

    code, out, _ = cli("leaderboard", "--results", tmp_path, "--format", "markdown")
    assert code == 0 and "| gru |" in " ".join(out.split()) and "±" in out
    code, out, _ = cli("leaderboard", "--results", tmp_path)
    assert code == 0 and "mqar" in out
