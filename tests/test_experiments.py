"""Experiment files, `run --from` (a recorded config re-run exactly) and `describe --model`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqbench.analyse.describe import config_comments
from seqbench.results import read_runs
from seqbench.sweeps.experiments import load_experiment, merge

SMOKE_FILE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.toml"


def test_smoke_experiment_file_runs_its_grid_with_flags_overriding(cli, tmp_path):
    settings = merge(load_experiment(SMOKE_FILE))
    assert settings.models == ("gru", "transformer") and settings.seeds == (0, 1) and settings.launch.jobs == 2
    assert "train.max_steps=2" in settings.sets
    # --jobs 1 overrides the file's 2 (in-process), --seeds 0 its two seeds, --max-steps its train.max_steps
    code, out, err = cli("sweep", SMOKE_FILE, "--results", tmp_path, "--jobs", "1", "--seeds", "0",
                         "--max-steps", "3")
    assert code == 0, out + err
    assert "2 cells in the grid" in out and "2 ok" in out
    rows = read_runs(tmp_path).to_pylist()
    assert sorted(r["model"] for r in rows) == ["gru", "transformer"] and {r["seed"] for r in rows} == {0}
    assert {r["steps"] for r in rows} == {3} and {r["preset"] for r in rows} == {"smoke"}


def test_every_experiment_file_shipped_loads():
    for path in SMOKE_FILE.parent.rglob("*.toml"):
        settings = merge(load_experiment(path))
        assert settings.models and settings.tasks, path


@pytest.mark.parametrize(("text", "message"), [
    ('modles = ["gru"]\n', "unknown key 'modles'"),
    ('models = ["gru"]\nseeds = [0.5]\n', "seeds must be a list of integers"),
    ('models = "gru"\ntasks = ["mqar"]\njobs = "two"\n', "jobs must be an integer"),
    ('models = ["gru"]\n[set]\ntrain.lr = 1\n', "quote dotted keys"),
    ('models = [\n', "cannot read experiment file"),
    ('tasks = ["mqar"]\n', "sweep needs --models and --tasks"),
    ('models = ["gru"]\ntasks = ["mqar"]\nparams = "lots"\n', "lots"),
    ('models = ["gru"]\ntasks = ["mqar"]\neval_lengths = [0]\n', "eval-lengths"),
])
def test_experiment_file_mistakes_are_user_errors(cli, tmp_path, text, message):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    code, _, err = cli("sweep", path, "--results", tmp_path / "results", "--dry-run")
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_unknown_key_gets_a_suggestion(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('models = ["gru"]\ncpus_per_cel = 2\n')
    with pytest.raises(Exception, match="Did you mean 'cpus_per_cell'"):
        load_experiment(path)


def test_run_from_reruns_the_recorded_config_exactly(cli, tmp_path):
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    code, *_ = cli("run", "--model", "gru", "--task", "mqar", "--preset", "smoke", "--seed", "3", "--set",
                   "model.d_model=8", "--max-steps", "4", "--no-progress", "--results", first)
    assert code == 0
    row = read_runs(first).to_pylist()[0]
    run_file = first / "runs" / f"{row['run_id']}.parquet"
    code, out, err = cli("run", "--from", run_file, "--no-progress", "--results", again)
    assert code == 0, out + err
    rerun = read_runs(again).to_pylist()[0]
    assert rerun["config_hash"] == row["config_hash"] and rerun["config_json"] == row["config_json"]
    assert rerun["loss"] == row["loss"] and rerun["accuracy"] == row["accuracy"]  # same seed, same CPU: same run
    (other / "runs").mkdir(parents=True)
    code, *_ = cli("run", "--from-config", row["config_json"], "--no-progress", "--results", other)
    assert code == 0 and read_runs(other).to_pylist()[0]["config_hash"] == row["config_hash"]
    code, _, err = cli("run", "--from", row["run_id"], "--results", first, "--seed", "4")
    assert code == 2 and "drop --seed" in err
    code, _, err = cli("run", "--from", "no-such-run", "--results", first)
    assert code == 2 and "no run 'no-such-run'" in err
    tampered = json.loads(row["config_json"])
    tampered["model_config"]["d_modle"] = 8
    code, _, err = cli("run", "--from-config", json.dumps(tampered), "--results", other)
    assert code == 2 and "d_modle" in err and "Did you mean model.d_model" in err
    assert len(list((other / "runs").glob("*.parquet"))) == 1 and len(pq.read_table(run_file)) == 1


def test_describe_model_lists_every_key_with_presets_and_comments(cli, registries):
    from seqbench_plugins.tgn import TGNConfig

    code, out, _ = cli("describe", "--model", "tgn", "--variant", "chunked", "--json")
    assert code == 0
    report = json.loads(out)
    keys = {k["key"]: k for k in report["keys"]}
    assert set(keys) == {f"model.{f}" for f in TGNConfig.__dataclass_fields__}
    assert keys["model.variant"]["presets"] == {"smoke": "chunked", "default": "chunked", "cpu": "chunked",
                                                "paper": "chunked"}
    assert keys["model.d_model"]["type"] == "int" and keys["model.d_model"]["default"] == 64
    assert keys["model.d_model"]["presets"]["smoke"] != keys["model.d_model"]["presets"]["paper"]
    assert keys["model.chunk_size"]["comment"] == "chunked: tokens per gate decision"
    assert keys["model.hard_train_from"]["comment"].startswith("training switches to hard mode")  # lines above
    assert keys["model.base"]["type"] == '"mamba" | "gru"'
    code, out, _ = cli("describe", "--model", "gru")
    assert code == 0 and "model.d_model" in out and "preset paper" in out
    code, _, err = cli("describe", "--model", "tgn", "--variant", "nope")
    assert code == 2 and "no variant 'nope'" in err


def test_config_comments_reads_trailing_and_preceding_comments():
    from dataclasses import dataclass

    from seqbench.configure.config import TrainConfig

    comments = config_comments(TrainConfig)
    assert comments["max_steps"] == "optimizer steps" and "batch_size" not in comments

    @dataclass
    class NoSource:  # defined here: its source is this file, still readable
        x: int = 1  # the x

    assert config_comments(NoSource) == {"x": "the x"}


def test_sweep_eta_comes_from_the_cells_that_ran(monkeypatch):
    from seqbench.sweeps import sweep_progress

    now = [100.0]
    monkeypatch.setattr(sweep_progress.time, "monotonic", lambda: now[0])
    clock = sweep_progress.SweepClock(total=5)
    assert clock.eta_s() is None and sweep_progress.format_seconds(None) == "?"
    now[0] = 130.0
    clock.add(ran=False)  # claimed elsewhere: counts as finished, not in the rate
    assert clock.eta_s() is None
    clock.add(ran=True)
    clock.add(ran=True)
    assert clock.eta_s() == pytest.approx(30.0 / 2 * 2)  # 15 s a cell, 2 cells left
    assert sweep_progress.format_seconds(3725) == "1:02:05"


def test_the_reproductions_experiment_files_name_the_claims_cells(registries):
    """experiments/reproduction-cpu/*.toml and the claims file's cpu sweeps are the same cells."""
    from seqbench.analyse.report import claim_commands, load_claims
    from seqbench.cli import build_parser
    from seqbench.sweeps.sweep import SweepSpec, expand

    def cells(settings) -> set[str]:
        spec = SweepSpec(models=settings.models, tasks=settings.tasks, seeds=settings.seeds,
                         variants=settings.variants, grid=settings.grid, sets=settings.overrides(),
                         preset=settings.preset, precision=settings.precision)
        return {cell.key for cell in expand(registries, spec)}

    from seqbench.cli.sweep import sweep_args

    from_claims = set()
    for argv in claim_commands(load_claims(), "cpu", Path("evidence/reproduction")):
        if argv[0] == "sweep":
            from_claims |= cells(sweep_args(build_parser().parse_args(argv)))
    files = sorted((SMOKE_FILE.parent / "reproduction-cpu").glob("*.toml"))
    assert files
    from_files = set()
    for path in files:
        from_files |= cells(merge(load_experiment(path)))
    assert from_files == from_claims
