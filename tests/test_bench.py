"""seqbench bench: one row per (model, variant, mode, length), constant tokens per step, oom/timeout rows."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from fake_plugins import FakeModels

from seqbench.bench import BenchOptions, batch_size_for, count_flops, run_bench
from seqbench.errors import UserError
from seqbench.registry import build_registries
from seqbench.results import BENCH_SCHEMA, iter_rows, read_bench


@pytest.fixture(scope="module")
def fake_registries():
    return build_registries(extra_plugins=(FakeModels(),))


def _options(tmp_path, **changes) -> BenchOptions:
    base = dict(models=("transformer", "gru"), lengths=(32, 64), preset="smoke", tokens_per_step=256, warmup=1,
                repeats=2, device="cpu", results_dir=tmp_path)
    return BenchOptions(**{**base, **changes})


def test_bench_writes_one_complete_row_per_model_and_length(registries, tmp_path):
    rows = list(run_bench(registries, _options(tmp_path, modes=("train", "infer"))))
    assert [(r["model"], r["mode"], r["seq_len"]) for r in rows] == [
        (m, mode, L) for m in ("transformer", "gru") for mode in ("train", "infer") for L in (32, 64)]
    table = read_bench(tmp_path)
    assert table.num_rows == 8 and table.schema.names == BENCH_SCHEMA.names
    for row in table.to_pylist():
        assert row["status"] == "ok", row["error"]
        assert row["batch_size"] * row["seq_len"] == 256  # constant tokens per step
        assert row["tokens_per_sec"] == pytest.approx(256 / row["step_time_s"])
        assert row["timed_steps"] == 2 and row["peak_mem_bytes"] > 0 and row["device"].startswith("cpu")
        assert 0 < row["mfu"] < 1 and row["peak_flops"] > 1e8
        assert row["mfu"] == pytest.approx(row["flops_per_token"] * row["tokens_per_sec"] / row["peak_flops"])
        assert row["forced_gate_rate"] is None and row["gate_rate_source"] is None
    by_key = {(r["model"], r["mode"], r["seq_len"]): r for r in table.to_pylist()}
    # a training step is counted as 3 forwards; attention makes the Transformer's cost per token grow with L
    assert by_key[("gru", "train", 32)]["flops_per_token"] == pytest.approx(
        3 * by_key[("gru", "infer", 32)]["flops_per_token"])
    assert by_key[("gru", "infer", 64)]["flops_per_token"] == pytest.approx(
        by_key[("gru", "infer", 32)]["flops_per_token"])
    assert by_key[("transformer", "infer", 64)]["flops_per_token"] > by_key[("transformer", "infer", 32)][
        "flops_per_token"]


def test_flop_count_includes_cpu_attention(registries):
    import torch

    from seqbench.bench import bench_info
    from seqbench_plugins.transformer import TransformerConfig, build

    d, L = 16, 64
    model = build(TransformerConfig(d_model=d, n_layers=1, n_heads=2), bench_info(L))
    flops = count_flops(model, torch.zeros(1, L, dtype=torch.long))
    # matmuls per token: qkv 3d^2, out d^2, FFN 8d^2, readout d*256 (x2 multiply-adds); attention 4*L*d
    assert flops / L == pytest.approx(2 * (3 * d * d + d * d + 8 * d * d + d * 256) + 4 * L * d)


def test_batch_size_keeps_tokens_constant():
    assert [batch_size_for(L, 8192) for L in (512, 1024, 8192, 16384)] == [16, 8, 1, 1]


def test_forced_gate_rate_is_applied_and_recorded(fake_registries, tmp_path):
    rows = list(run_bench(fake_registries, _options(tmp_path, models=("fake_gated",), gate_rate=0.25)))
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["forced_gate_rate"] == 0.25 and r["gate_rate_source"] == "forced" for r in rows)
    assert all(r.get("gate_rate") is None for r in rows)  # the forced rate is the one on record
    learned = list(run_bench(fake_registries, _options(tmp_path / "b", models=("fake_gated",))))
    assert all(r["gate_rate_source"] == "learned" and r["forced_gate_rate"] is None for r in learned)
    assert all(0 <= r["gate_rate"] <= 1 for r in learned)
    # forcing must reach the model in hard mode: the step's gates are then exactly the forced fraction
    from seqbench.bench import StepRunner, bench_info, force_gates, resolve_models

    model = resolve_models(fake_registries, _options(tmp_path, models=("fake_gated",)))[0]
    module = model.build(model.config, bench_info(64))
    force_gates(module, 0.25)
    import torch

    step = StepRunner(module, "infer", torch.zeros(2, 64, dtype=torch.long), None)
    step()
    assert module.mode == "hard" and step.gate_fractions == [pytest.approx(0.25)]


def test_gate_rate_for_a_model_without_gates_is_a_user_error(cli, tmp_path):
    code, _, err = cli("bench", "--models", "transformer", "--gate-rate", "0.15", "--lengths", "32",
                       "--preset", "smoke", "--results", tmp_path)
    assert code == 2 and "force_gate_rate" in err and "transformer" in err
    assert not (tmp_path / "bench").exists()


def test_oom_and_timeout_are_recorded_and_the_benchmark_goes_on(fake_registries, tmp_path):
    rows = list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), lengths=(32, 64, 128),
                                                    overrides=("model.fail_above=40",))))
    assert [r["status"] for r in rows] == ["ok", "oom", "oom"]
    assert "MemoryError" in rows[1]["error"] and rows[1].get("tokens_per_sec") is None
    failed = list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), lengths=(64,),
                                                      overrides=("model.fail_above=40", "model.failure=runtime"))))
    assert failed[0]["status"] == "failed" and "fake model bug" in failed[0]["error"]
    slow = list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), lengths=(32,), timeout_s=0.0,
                                                    repeats=3)))
    assert slow[0]["status"] == "timeout" and slow[0].get("tokens_per_sec") is None
    assert len(list((tmp_path / "bench").glob("*.parquet"))) == 5
    for path in (tmp_path / "bench").glob("*.parquet"):
        pq.read_table(path)  # every row file is complete


def test_missing_only_measures_just_what_has_no_ok_row(fake_registries, tmp_path, cli):
    first = list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), lengths=(32, 64, 128),
                                                     overrides=("model.fail_above=40",))))
    assert [r["status"] for r in first] == ["ok", "oom", "oom"]
    skipped = []
    again = list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), lengths=(32, 64, 128),
                                                     missing_only=True), note=skipped.append))
    assert [r["seq_len"] for r in again] == [64, 128]  # the oom lengths are retried, the ok one is not
    assert len(skipped) == 1 and "L=32: already measured" in skipped[0]
    # another gate rate, preset or thread count is another measurement
    other = list(run_bench(fake_registries, _options(tmp_path, models=("fake_gated",), lengths=(32,), gate_rate=0.5,
                                                     missing_only=True)))
    assert len(other) == 1
    assert list(run_bench(fake_registries, _options(tmp_path, models=("fake_gated",), lengths=(32,),
                                                    gate_rate=0.5, missing_only=True))) == []
    assert len(list(run_bench(fake_registries, _options(tmp_path, models=("fake_gated",), lengths=(32,),
                                                         gate_rate=0.25, missing_only=True)))) == 1
    argv = ("bench", "--models", "gru", "--lengths", "32", "--preset", "smoke", "--tokens-per-step", "64",
            "--warmup", "0", "--repeats", "1", "--results", tmp_path / "cli", "--missing-only")
    assert cli(*argv)[0] == 0
    code, out, _ = cli(*argv)
    assert code == 0 and "nothing to measure" in out and len(read_bench(tmp_path / "cli")) == 1
    with pytest.raises(UserError, match="--set overrides"):
        list(run_bench(fake_registries, _options(tmp_path, models=("fake_plain",), missing_only=True,
                                                 overrides=("model.fail_above=40",))))


def test_bench_cli_prints_a_table_and_rejects_bad_input(cli, tmp_path):
    code, out, _ = cli("bench", "--models", "gru", "--lengths", "32", "--preset", "smoke", "--tokens-per-step", "64",
                       "--warmup", "0", "--repeats", "1", "--results", tmp_path)
    assert code == 0 and "gru" in out and "tokens/s" in out
    assert cli("bench", "--models", "gru", "--lengths", "32,x", "--results", tmp_path)[0] == 2
    assert cli("bench", "--models", "gru", "--mode", "fit", "--lengths", "32", "--results", tmp_path)[0] == 2
    assert cli("bench", "--models", "nope", "--lengths", "32", "--results", tmp_path)[0] == 2
    with pytest.raises(UserError, match="model.KEY"):
        from seqbench.bench import resolve_models

        resolve_models(build_registries(), BenchOptions(models=("gru",), overrides=("task.seq_len=3",)))


def test_kernels_column_records_the_paths_the_timed_steps_ran(registries, tmp_path, monkeypatch):
    from seqbench.train import kernels
    from seqbench_plugins import cpu_scan

    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    rows = list(run_bench(registries, _options(tmp_path, models=("mamba",), modes=("train", "infer"), lengths=(32,))))
    by_mode = {r["mode"]: r for r in rows}
    expected = "mamba:cpu-kernel" if cpu_scan.available() else "mamba:torch-chunked"
    assert by_mode["train"]["kernels"] == expected  # the fused backward where the kernel builds
    assert by_mode["infer"]["kernels"] == expected


def test_bf16_mixed_rows_beside_fp32_with_their_speedup(registries, tmp_path):
    from seqbench.bench import speedups

    rows = list(run_bench(registries, _options(tmp_path, models=("gru",), lengths=(32,), modes=("train", "infer"),
                                               precisions=("32-true", "bf16-mixed"))))
    assert [(r["mode"], r["dtype"]) for r in rows] == [("train", "float32"), ("train", "bf16-mixed"),
                                                        ("infer", "float32"), ("infer", "bf16-mixed")]
    assert all(r["status"] == "ok" and r["tokens_per_sec"] > 0 for r in rows)
    ratios = speedups(rows)
    assert set(ratios) == {r["bench_id"] for r in rows if r["dtype"] == "bf16-mixed"}
    train32, train16 = rows[0], rows[1]
    assert ratios[train16["bench_id"]] == pytest.approx(train16["tokens_per_sec"] / train32["tokens_per_sec"])
    # bf16's MFU is against bf16's own peak matmul, not fp32's
    assert train16["peak_flops"] != train32["peak_flops"]
    assert {r["dtype"] for r in iter_rows(read_bench(tmp_path))} == {"float32", "bf16-mixed"}


def test_bench_precision_mistakes_exit_2_and_missing_only_tells_precisions_apart(registries, tmp_path, cli):
    with pytest.raises(UserError, match="choose from 32-true, bf16-mixed"):
        list(run_bench(registries, _options(tmp_path, precisions=("fp8",))))
    code, _, err = cli("bench", "--models", "gru", "--lengths", "32", "--precision", "16-true", "--results", tmp_path)
    assert code == 2 and "--precision" in err
    list(run_bench(registries, _options(tmp_path, models=("gru",), lengths=(32,))))
    again = list(run_bench(registries, _options(tmp_path, models=("gru",), lengths=(32,), missing_only=True,
                                                precisions=("32-true", "bf16-mixed"))))
    assert [r["dtype"] for r in again] == ["bf16-mixed"]  # fp32 was measured already, bf16 was not
