"""seqbench plot: the three figures from Parquet rows alone (nothing is re-run)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from seqbench.analyse.plots import varying_task_key
from seqbench.results import write_bench_row, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    for model, base in (("gcn", 0.9), ("graphgps", 0.95)):
        for nodes in (20, 40, 60):
            for seed in (0, 1):
                run_id = f"{model}-{nodes}-{seed}"
                config = {"task_config": {"num_nodes": nodes, "num_train": 100}, "model_config": {}, "train": {}}
                acc = base - (0.005 if model == "graphgps" else 0.01) * nodes + 0.01 * seed
                curve = [{"step": float(s), "accuracy": acc * s / 30, "loss": 1.0 / s,
                          **({"gate_rate": 0.5 / s} if model == "graphgps" else {})} for s in (10, 20, 30)]
                write_run(tmp_path, {"run_id": run_id, "model": model, "variant": "default", "task": "ring_distance",
                                     "task_version": 1, "preset": "smoke", "seed": seed, "status": "ok",
                                     "accuracy": acc, "config_json": json.dumps(config), "started_at": now}, curve)
    for model, rate in (("transformer", 4e6), ("tgn", 8e6)):
        for length in (1024, 2048, 4096):
            status = "oom" if model == "transformer" and length == 4096 else "ok"
            write_bench_row(tmp_path, {"bench_id": f"{model}-{length}", "model": model, "variant": "default",
                                       "preset": "default", "mode": "train", "seq_len": length, "batch_size": 1,
                                       "status": status, "tokens_per_sec": rate / length if status == "ok" else None,
                                       "device": "cpu (2 threads)", "started_at": now,
                                       "forced_gate_rate": 0.15 if model == "tgn" else None})


def test_plot_writes_the_three_figures(cli, tmp_path):
    _results(tmp_path)
    code, out, _ = cli("plot", "--results", tmp_path, "--out", tmp_path / "plots")
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["accuracy_vs_num_nodes_ring_distance_smoke.png", "curves_ring_distance_smoke.png",
                     "throughput_train_default.png"]
    for path in (tmp_path / "plots").glob("*.png"):
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
        assert str(path) in " ".join(out.split())


def test_plot_default_folder_and_empty_results(cli, tmp_path):
    _results(tmp_path)
    assert cli("plot", "--results", tmp_path)[0] == 0
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    (tmp_path / "empty").mkdir()
    code, _, err = cli("plot", "--results", tmp_path / "empty")
    assert code == 2 and "nothing to plot" in err
    assert not (tmp_path / "empty" / "plots").exists()


def test_varying_key_prefers_ring_size():
    rows = [{"config_json": json.dumps({"task_config": {"num_nodes": n, "seq_len": 2 * n}})} for n in (10, 20)]
    assert varying_task_key(rows) == "num_nodes"
    same = [{"config_json": json.dumps({"task_config": {"num_nodes": 10}})}] * 2
    assert varying_task_key(same) is None


def test_missing_matplotlib_is_a_user_error(monkeypatch, tmp_path):
    import builtins

    from seqbench.analyse import plots
    from seqbench.errors import UserError

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UserError, match="a seqbench dependency: pip install matplotlib"):
        plots.make_plots(tmp_path, tmp_path / "plots")
