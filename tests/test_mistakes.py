"""Every user mistake is a clean exit 2: one message naming the culprit, no traceback, nothing written.

Each case runs ``seqbench.cli.main`` in-process from a scratch working folder that holds a results
folder with one row, a regular file, WikiText folders and claims files. The whole workspace is
snapshot before and after: a mistake must leave every file as it was and create none. ``{W}`` in an
argument is the workspace, ``{R}`` its results folder, ``{E}`` an empty results folder.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqbench.cli import main
from seqbench.configure.resolve import planned_task_info, resolve_run_config
from seqbench.registry import build_registries, load_spec_target
from seqbench.results import write_run
from seqbench.sweeps.experiments import load_experiment, merge
from seqbench.train.checkpoints import save_model

SMOKE = ("--preset", "smoke", "--no-progress")
RUN = ("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{R}")
SWEEP = ("sweep", "--models", "gru", "--tasks", "mqar", "--preset", "smoke", "--results", "{R}")
BENCH = ("bench", "--models", "gru", "--preset", "smoke", "--lengths", "16", "--results", "{R}")
WIKI = ("run", "--model", "gru", "--task", "wikitext", *SMOKE, "--results", "{R}")
DESCRIBE = ("describe", "--task", "mqar", "--preset", "smoke")
NO_CUDA = not torch.cuda.is_available()
CLAIM = {"id": "c1", "claim": "x", "paper_value": "1", "source": "runs",
         "measure": {"kind": "value", "task": "mqar", "model": "gru", "metric": "accuracy"},
         "supported": ["at_least", 0.9], "contradicted": ["below", 0.5], "sweep": {"models": "gru", "tasks": "mqar"},
         "presets": {"smoke": {"seeds": "0"}}}


def _claims(**changes) -> str:
    return json.dumps({"claims": [{**CLAIM, **changes}]})


def _without(key: str) -> str:
    return json.dumps({"claims": [{k: v for k, v in CLAIM.items() if k != key}]})


CLAIMS_FILES = {
    "list.json": "[]", "string.json": '"claims"', "number-claim.json": '{"claims": [1]}',
    "claims-object.json": '{"claims": {"a": 1}}', "no-claims.json": "{}", "not-json.json": "{claims",
    "no-measure.json": _without("measure"), "bad-kind.json": _claims(measure={**CLAIM["measure"], "kind": "sum"}),
    "no-metric.json": _claims(measure={"kind": "value", "task": "mqar", "model": "gru"}),
    "bad-rule.json": _claims(supported=["roughly", 1]), "rule-arity.json": _claims(supported=["within", 0.5]),
    "rule-text.json": _claims(contradicted=["below", "half"]), "presets-list.json": _claims(presets=["smoke"]),
    "no-sweep.json": _without("sweep"), "measure-side.json": _claims(
        measure={"kind": "difference", "task": "mqar", "metric": "accuracy", "a": "gru", "b": {"model": "tgn"}}),
}

# (argv, culprit that the message must name[, text the message must not contain])
MISTAKES = [
    # ------------------------------------------------------------------ parser (argparse: exit 2)
    (("bogus-command",), "bogus-command"),
    ((), "COMMAND"),
    (("list", "--jsn"), "--jsn"),
    (("list", "extra"), "extra"),
    (("run", "--task", "mqar"), "--model"),
    ((*RUN, "--seed", "abc"), "abc"),
    ((*RUN, "--num-nodes", "x"), "x"),
    ((*RUN, "--precision", "8"), "8"),
    ((*RUN, "--device", "tpu"), "tpu"),
    ((*RUN, "--probe", "bogus"), "bogus"),
    (("leaderboard", "--results", "{R}", "--format", "xml"), "xml"),
    ((*BENCH, "--timeout", "soon"), "soon"),
    # --------------------------------------------------------------------------------- run
    (("run", "--model", "transfomer", "--task", "mqar", *SMOKE, "--results", "{R}"), "transfomer"),
    (("run", "--model", "[/]", "--task", "mqar", *SMOKE, "--results", "{R}"), "'[/]'"),
    (("run", "--model", "[bold]gru", "--task", "mqar", *SMOKE, "--results", "{R}"), "[bold]gru"),
    (("run", "--model", "gru", "--task", "mqr", *SMOKE, "--results", "{R}"), "mqr"),
    (("run", "--model", "gru", "--task", "mqar", "--preset", "huge", "--results", "{R}"), "huge"),
    ((*RUN, "--variant", "fast"), "fast"),
    ((*RUN, "--seed", "-1"), "--seed -1"),
    ((*RUN, "--seed", "99999999999"), "99999999999"),
    ((*RUN, "--devices", "abc"), "abc"),
    ((*RUN, "--devices", "0"), "--devices '0'"),
    ((*RUN, "--devices", "-1"), "'-1'"),
    ((*RUN, "--devices", "0,0"), "'0,0'"),
    ((*RUN, "--device", "cpu", "--devices", "0,1"), "'0,1'"),
    ((*RUN, "--strategy", "bogus"), "bogus"),
    ((*RUN, "--strategy", "dpp"), "dpp"),
    ((*RUN, "--device", "cpu", "--strategy", "fsdp"), "fsdp"),
    ((*RUN, "--num-nodes", "0"), "--num-nodes 0"),
    ((*RUN, "--num-nodes", "-3"), "-3"),
    ((*RUN, "--device", "cpu", "--precision", "16-mixed"), "16-mixed"),
    ((*RUN, "--set", "task.seq_len=-1"), "task.seq_len"),
    ((*RUN, "--set", "task.num_kv_pairs=99"), "task.num_kv_pairs"),
    ((*RUN, "--set", "train.lr=inf"), "inf"),
    ((*RUN, "--set", "train.lr=nan"), "nan"),
    ((*RUN, "--set", "train.lr=-inf"), "-inf"),
    ((*RUN, "--set", "model.dropout=inf"), "model.dropout"),
    ((*RUN, "--set", "train.lr=abc"), "abc"),
    ((*RUN, "--set", "train.batch_size=0"), "train.batch_size"),
    ((*RUN, "--set", "noequals"), "noequals"),
    ((*RUN, "--set", "bogus.x=1"), "bogus"),
    ((*RUN, "--set", "model.d_modl=8"), "d_modl"),
    ((*RUN, "--set", "model.variant=serial"), "model.variant"),
    (("run", "--model", "tgn", "--variant", "parallel", "--task", "mqar", *SMOKE, "--set", "model.variant=serial",
      "--results", "{R}"), "model.variant"),
    ((*RUN, "--max-steps", "0"), "max_steps"),
    ((*RUN, "--max-steps", "-5"), "max_steps"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", ""), "--results"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{W}/afile"), "afile"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{W}/afile/sub"), "afile"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{W}/[x]file"), "[x]file"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{W}/[x]file/sub"), "[x]file"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "/proc/seqbench-results"), "/proc/seqbench"),
    (("run", "--model", "gru", "--task", "mqar", *SMOKE, "--results", "{W}/runs-file"), "runs"),
    ((*WIKI, "--set", "task.data_dir={W}/wiki-empty"), "wiki.train.tokens is empty"),
    ((*WIKI, "--set", "task.data_dir={W}/wiki-blank"), "blank"),
    ((*WIKI, "--set", "task.data_dir={W}/wiki-latin1"), "not UTF-8"),
    ((*WIKI, "--set", "task.data_dir={W}/wiki-missing"), "wiki-missing"),
    ((*WIKI, "--set", "task.data_dir={W}/afile"), "afile"),
    ((*WIKI, "--set", "task.data_dir={W}/wiki-ok", "--set", "task.seq_len=100000"), "task.seq_len"),
    # ---------------------------------------------------------------------------- describe
    (("describe", "--task", "mqr"), "mqr"),
    (("describe", "--task", "[/]"), "'[/]'"),
    (("describe", "--task", "mqar", "--preset", "huge"), "huge"),
    ((*DESCRIBE, "--seed", "-1"), "-1"),
    ((*DESCRIBE, "--set", "model.d_model=8"), "model.d_model"),
    ((*DESCRIBE, "--set", "task.seq_len=0"), "task.seq_len"),
    ((*DESCRIBE, "--set", "task.nope=1"), "task.nope"),
    ((*DESCRIBE, "--set", "task.power_a=nan"), "nan"),
    (("describe", "--task", "wikitext", "--preset", "smoke", "--set", "task.data_dir={W}/wiki-blank"), "blank"),
    # ------------------------------------------------------------------------- leaderboard
    (("leaderboard", "--results", "{W}/nowhere"), "nowhere"),
    (("leaderboard", "--results", "{E}"), "no results in"),
    (("leaderboard", "--results", "{W}/afile"), "afile"),
    (("leaderboard", "--results", "{R}", "--task", "mqr"), "mqr"),
    (("leaderboard", "--results", ""), "--results"),
    # ------------------------------------------------------------------------------- bench
    (("bench", "--models", "bogus", "--preset", "smoke", "--results", "{R}"), "bogus"),
    (("bench", "--models", ",", "--preset", "smoke", "--results", "{R}"), "--models"),
    ((*BENCH[:-4], "--lengths", "0", "--results", "{R}"), "--lengths"),
    ((*BENCH[:-4], "--lengths", "abc", "--results", "{R}"), "abc"),
    ((*BENCH[:-4], "--lengths", ",", "--results", "{R}"), "--lengths"),
    ((*BENCH, "--mode", "fly"), "fly"),
    ((*BENCH, "--gate-rate", "2"), "--gate-rate"),
    ((*BENCH, "--gate-rate", "-0.1"), "--gate-rate"),
    ((*BENCH, "--gate-rate", "0.15"), "gru"),
    ((*BENCH, "--tokens-per-step", "0"), "--tokens-per-step"),
    ((*BENCH, "--timeout", "-1"), "--timeout"),
    ((*BENCH, "--timeout", "nan"), "--timeout"),
    ((*BENCH, "--warmup", "-1"), "--warmup"),
    ((*BENCH, "--repeats", "0"), "--repeats"),
    ((*BENCH, "--threads", "0"), "--threads"),
    ((*BENCH, "--preset", "huge"), "huge"),
    ((*BENCH, "--set", "task.seq_len=8"), "model.KEY"),
    ((*BENCH, "--set", "model.d_model=inf"), "inf"),
    ((*BENCH, "--variant", "fast"), "fast"),
    ((*BENCH[:-2], "--results", "{W}/afile"), "afile"),
    ((*BENCH[:-2], "--results", ""), "--results"),
    # ------------------------------------------------------------------------------- sweep
    (("sweep", "--models", ",", "--tasks", "mqar", "--results", "{R}"), "--models"),
    (("sweep", "--models", "gru", "--tasks", ",", "--results", "{R}"), "--tasks"),
    ((*SWEEP, "--seeds", ","), "--seeds"),
    ((*SWEEP, "--seeds", "a,b"), "a,b"),
    ((*SWEEP, "--seeds", "0,0"), "twice"),
    ((*SWEEP, "--seeds", "0,-1"), "-1"),
    (("sweep", "--models", "bogus", "--tasks", "mqar", "--results", "{R}"), "bogus"),
    (("sweep", "--models", "gru", "--tasks", "bogus", "--results", "{R}"), "bogus"),
    ((*SWEEP, "--variants", "fast"), "fast"),
    ((*SWEEP, "--grid", "num_nodes=10"), "--grid 'num_nodes=10'", "--set"),
    ((*SWEEP, "--grid", "task.num_kv_pairs="), "--grid"),
    ((*SWEEP, "--grid", "task.nope=1,2"), "task.nope"),
    ((*SWEEP, "--grid", "model.variant=a,b"), "model.variant"),
    ((*SWEEP, "--grid", "train.lr=inf,0.1"), "inf"),
    ((*SWEEP, "--set", "train.lr=inf"), "inf"),
    ((*SWEEP, "--set", "model.variant=serial"), "model.variant"),
    ((*SWEEP, "--max-steps", "0"), "max_steps"),
    ((*SWEEP, "--shard", "3/2"), "3/2"),
    ((*SWEEP, "--shard", "x"), "'x'"),
    ((*SWEEP, "--shard", "0/0"), "0/0"),
    ((*SWEEP, "--preset", "huge"), "huge"),
    ((*SWEEP, "--devices", "abc"), "abc"),
    ((*SWEEP, "--devices", "0"), "--devices '0'"),
    ((*SWEEP, "--strategy", "bogus"), "bogus"),
    ((*SWEEP, "--num-nodes", "0"), "--num-nodes 0"),
    ((*SWEEP, "--device", "cpu", "--precision", "16-mixed"), "16-mixed"),
    ((*SWEEP[:-2], "--results", "{W}/afile"), "afile"),
    ((*SWEEP[:-2], "--results", "/proc/seqbench-results"), "/proc/seqbench"),
    ((*SWEEP[:-2], "--results", ""), "--results"),
    (("sweep", "--models", "gru", "--tasks", "wikitext", "--preset", "smoke", "--set",
      "task.data_dir={W}/wiki-empty", "--results", "{R}"), "wiki.train.tokens is empty"),
    # -------------------------------------------------------------------------------- plot
    (("plot", "--results", "{W}/nowhere/deeper"), "nowhere"),
    (("plot", "--results", "{W}/afile"), "afile"),
    (("plot", "--results", "{E}"), "nothing to plot"),
    (("plot", "--results", ""), "--results"),
    (("plot", "--results", "{R}", "--out", "{W}/afile/plots"), "afile"),
    (("plot", "--results", "{R}", "--out", "/proc/seqbench-plots"), "/proc/seqbench-plots"),
    (("plot", "--results", "{R}", "--out", ""), "--out"),
    # ------------------------------------------------------------------------------ report
    (("report", "--results", "{W}/nowhere"), "nowhere"),
    (("report", "--results", "{W}/afile"), "afile"),
    (("report", "--results", ""), "--results"),
    (("report", "--results", "{R}", "--preset", "bogus"), "bogus"),
    (("report", "--results", "{R}", "--out", "{W}/afile/report.md"), "afile"),
    (("report", "--results", "{R}", "--out", "{W}/wiki-ok"), "wiki-ok"),
    (("report", "--results", "{R}", "--out", ""), "--out"),
    (("report", "--results", "{R}", "--claims", "{W}/nowhere.json"), "nowhere.json"),
    (("report", "--results", "{R}", "--claims", ""), "--claims"),
    (("report", "--results", "{R}", "--since", "{W}/nowhere.md"), "nowhere.md"),
    (("report", "--results", "{R}", "--since", "{W}/afile"), "no claims table"),
    (("report", "--results", "{R}", "--since", ""), "--since"),
    (("report", "--results", "{R}", "--claims", "{W}/wiki-ok"), "wiki-ok"),
    (("report", "--results", "{R}", "--claims", "{W}/wiki-latin1/wiki.train.tokens"), "wiki.train.tokens"),
    *((("report", "--results", "{R}", "--claims", f"{{W}}/claims/{name}"), name) for name in CLAIMS_FILES),
]
# issue 22: the mistakes that gave a traceback, were accepted silently, printed the config first or hung
SAVED = "20260101-000000-gru-mqar-s0-saved0"  # a saved model (untrained weights) the workspace holds
MISTAKES += [
    # absurd sizes: refused from the memory estimate, before anything is allocated
    ((*RUN, "--set", "model.d_model=99999999"), "would need at least"),
    ((*RUN, "--params", "1000g"), "would need at least"),
    ((*SWEEP, "--set", "model.d_model=99999999"), "would need at least"),
    # --from-config through the same typed path as --set
    ((*RUN[:1], "--from-config", "{W}/configs/preset.json", *SMOKE[2:], "--results", "{R}"), "huge"),
    ((*RUN[:1], "--from-config", "{W}/configs/variant.json", *SMOKE[2:], "--results", "{R}"), "fast"),
    ((*RUN[:1], "--from-config", "{W}/configs/seed-text.json", *SMOKE[2:], "--results", "{R}"), "seed"),
    ((*RUN[:1], "--from-config", "{W}/configs/sections-list.json", *SMOKE[2:], "--results", "{R}"), "model_config"),
    ((*RUN[:1], "--from-config", "{W}/configs/lr-text.json", *SMOKE[2:], "--results", "{R}"), "train.lr"),
    ((*RUN[:1], "--from-config", "{W}/configs/precision.json", *SMOKE[2:], "--results", "{R}"), "8-bit"),
    ((*RUN[:1], "--from-config", "{W}/configs/variant-clash.json", *SMOKE[2:], "--results", "{R}"), "agree"),
    ((*RUN[:1], "--from-config", "{W}/configs/huge.json", *SMOKE[2:], "--results", "{R}"), "would need at least"),
    # values that were accepted
    ((*RUN, "--set", "train.weight_decay=-1"), "train.weight_decay"),
    ((*SWEEP, "--set", "train.weight_decay=-1"), "train.weight_decay"),
    ((*SWEEP, "--grid", "train.lr=0.1,0.2", "--grid", "train.lr=0.3"), "train.lr twice"),
    ((*SWEEP, "--grid", "train.lr=0.1,0.2", "--set", "train.lr=0.3"), "train.lr is both"),
    ((*SWEEP, "--grid", "train.max_steps=5,6", "--max-steps", "7"), "train.max_steps is both"),
    ((*SWEEP, "--tune", "train.bogus"), "train.bogus"),
    (("plot", "--results", "{R}", "--tune", "train.bogus"), "train.bogus"),
    ((*SWEEP[:-2], "--dry-run", "--results", "{W}/afile"), "afile"),
    ((*SWEEP, "--gpus-per-cell", "nan"), "--gpus-per-cell"),
    ((*SWEEP, "--gpus-per-cell", "inf"), "--gpus-per-cell"),
    # checked before the config is printed (test_checks_that_need_no_training_come_before_the_config)
    ((*RUN, "--checkpoint-every", "0"), "--checkpoint-every"),
    ((*RUN, "--checkpoint-every", "5", "--keep-checkpoints", "0"), "--keep-checkpoints"),
    ((*RUN, "--threads", "-1"), "--threads"),
    ((*RUN, "--resume"), "--resume"),
    ((*SWEEP, "--checkpoint-every", "0"), "--checkpoint-every"),
    # hung
    ((*RUN, "--num-nodes", "2"), "--num-nodes 2"),
    ((*SWEEP, "--num-nodes", "2"), "--num-nodes 2"),
    ((*RUN, "--max-steps", "99999999999999999999999"), "max_steps"),
    ((*SWEEP, "--max-steps", "99999999999999999999999"), "max_steps"),
    # eval: a bad model file, a bad evals file, checked before any evaluation
    (("eval", "20260101-000000-gru-mqar-s0-empty0", "--results", "{R}"), "empty0.pt does not load"),
    (("eval", "20260101-000000-gru-mqar-s0-junk00", "--results", "{R}"), "junk00.pt does not load"),
    (("eval", "20260101-000000-gru-mqar-s0-other0", "--results", "{R}"), "not a seqbench model file"),
    (("eval", "20260101-000000-gru-mqar-s0-shape0", "--results", "{R}"), "does not fit its own config"),
    (("eval", SAVED, "--results", "{R}"), "earlier evaluations"),
]
if NO_CUDA:  # on a CUDA machine these are not mistakes
    MISTAKES += [((*RUN, "--device", "cuda"), "--device cuda"), ((*SWEEP, "--device", "cuda"), "--device cuda"),
                 ((*BENCH, "--device", "cuda"), "--device cuda")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("mistakes")
    (w / "afile").write_text("not a folder")
    (w / "[x]file").write_text("not a folder either")
    (w / "runs-file").mkdir()
    (w / "runs-file" / "runs").write_text("runs/ should be a folder")
    (w / "empty-results").mkdir()
    for name, text in (("wiki-ok", " the cat sat . \n" * 50), ("wiki-empty", ""), ("wiki-blank", "\n  \n" * 20)):
        (w / name).mkdir()
        for split in ("train", "valid", "test"):
            (w / name / f"wiki.{split}.tokens").write_text(text)
    (w / "wiki-latin1").mkdir()
    for split in ("train", "valid", "test"):
        (w / "wiki-latin1" / f"wiki.{split}.tokens").write_bytes("café olé\n".encode("latin-1") * 20)
    (w / "claims").mkdir()
    for name, text in CLAIMS_FILES.items():
        (w / "claims" / name).write_text(text)
    row = {"run_id": "20260101-000000-gru-mqar-s0-abcdef", "model": "gru", "variant": "default", "task": "mqar",
           "task_version": 1, "preset": "smoke", "seed": 0, "status": "ok", "accuracy": 0.5, "loss": 1.0,
           "config_hash": "0" * 16, "config_json": "{}", "started_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    write_run(w / "results", row, [{"step": 1.0, "loss": 1.0, "accuracy": 0.5}])
    _saved_models(w / "results")
    _configs(w / "configs")
    return w


def _saved_models(results: Path) -> None:
    """Model files for `eval`: one whose earlier evals file is damaged, one that loads and can be evaluated
    (the read-only test), and damaged ones."""
    registries = build_registries()
    config = resolve_run_config(registries, "gru", "mqar", preset="smoke")
    info = planned_task_info(registries.tasks.get("mqar"), config.task_config)
    module = load_spec_target(registries.models.get("gru"), "build")(config.model_config, info)
    save_model(results, SAVED, module, config.to_json())
    save_model(results, SAVED + "b", module, config.to_json())
    (results / "evals").mkdir()
    (results / "evals" / f"{SAVED}.parquet").write_bytes(b"PAR1 not really")
    models = results / "models"
    (models / "20260101-000000-gru-mqar-s0-empty0.pt").write_bytes(b"")
    (models / "20260101-000000-gru-mqar-s0-junk00.pt").write_bytes(b"\x00junk" * 100)
    torch.save({"weights": [1, 2]}, models / "20260101-000000-gru-mqar-s0-other0.pt")
    bigger = resolve_run_config(registries, "gru", "mqar", preset="smoke", overrides=["model.d_model=24"])
    other = load_spec_target(registries.models.get("gru"), "build")(bigger.model_config, info)
    torch.save({"run_id": "x", "config_json": config.to_json(), "state_dict": other.state_dict()},
               models / "20260101-000000-gru-mqar-s0-shape0.pt")


def _configs(folder: Path) -> None:
    """--from-config files, each a real config_json with one thing wrong."""
    registries = build_registries()
    gru = resolve_run_config(registries, "gru", "mqar", preset="smoke").to_dict()
    tgn = resolve_run_config(registries, "tgn", "mqar", preset="smoke").to_dict()
    folder.mkdir()
    cases = {
        "preset": {**gru, "preset": "huge"},
        "variant": {**gru, "variant": "fast"},
        "seed-text": {**gru, "seed": "zero"},
        "sections-list": {**gru, "model_config": [1, 2]},
        "lr-text": {**gru, "train": {**gru["train"], "lr": "fast"}},
        "precision": {**gru, "precision": "8-bit"},
        "variant-clash": {**tgn, "variant": "serial"},  # model_config.variant says parallel
        "huge": {**gru, "model_config": {**gru["model_config"], "d_model": 99999999}},
    }
    for name, config in cases.items():
        (folder / f"{name}.json").write_text(json.dumps(config))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with, for files, their size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in root.rglob("*")}


def _argv(template: tuple[str, ...], w: Path) -> list[str]:
    return [a.replace("{W}", str(w)).replace("{R}", str(w / "results")).replace("{E}", str(w / "empty-results"))
            for a in template]


def _id(case) -> str:
    return " ".join(case[0])[:90] or "(no arguments)"


@pytest.mark.parametrize("case", MISTAKES, ids=_id)
def test_mistake_exits_2_naming_the_culprit_and_writes_nothing(case, workspace, capsys, monkeypatch):
    template, culprit, *absent = case
    argv = _argv(template, workspace)
    monkeypatch.chdir(workspace)  # default folders (results/) would land here, inside the snapshot
    before = snapshot(workspace)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    message = " ".join(err.split())
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert culprit.replace("{W}", str(workspace)) in message, message
    for text in absent:
        assert text not in message, message
    assert snapshot(workspace) == before


def test_at_least_80_mistakes_cover_every_subcommand():
    assert len(MISTAKES) >= 80
    commands = {case[0][0] for case in MISTAKES if case[0]}
    assert {"list", "run", "describe", "leaderboard", "bench", "sweep", "plot", "report"} <= commands


def test_a_read_only_results_folder_fails_before_any_work(workspace, capsys, monkeypatch):
    """Root ignores permission bits, so the refusal of the file system is simulated where it happens."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = snapshot(workspace)
    for template in (RUN, SWEEP, BENCH, ("eval", SAVED + "b", "--results", "{R}")):
        assert main(_argv(template, workspace)) == 2
        assert "cannot write to --results" in capsys.readouterr().err
    assert main(_argv((*RUN[:-1], "{W}/new/results"), workspace)) == 2
    assert "Permission denied" in capsys.readouterr().err
    assert snapshot(workspace) == before  # the folders the check made for its probe are gone again


def test_rich_markup_in_messages_is_printed_as_typed(workspace, capsys):
    """User text that looks like rich markup is printed as typed (``[plot]`` in a hint once vanished)."""
    before = snapshot(workspace)
    assert main(_argv(("describe", "--task", "[bold]x[/bold]"), workspace)) == 2
    assert "'[bold]x[/bold]'" in capsys.readouterr().err
    assert snapshot(workspace) == before


def test_a_sweep_checks_run_time_options_before_its_first_cell(workspace, capsys):
    """A mistake in a sweep's run-time options is not recorded as a failed row of its first cell."""
    argv = _argv((*SWEEP, "--seeds", "0,1", "--devices", "abc"), workspace)
    before = snapshot(workspace)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--devices 'abc'" in err and "already done" not in err
    assert snapshot(workspace) == before


@pytest.mark.parametrize("argv, culprit", [
    (["run", "--model", "[/]", "--task", "mqar", "--results", "{W}/r"], "'[/]'"),
    (["report", "--results", "{W}/r"], "does not exist"),  # reading results never creates the folder
])
def test_the_installed_entry_point_exits_2_without_a_traceback(workspace, argv, culprit):
    script = Path(sys.executable).parent / "seqbench"  # the console script pip installed beside python
    proc = subprocess.run([str(script), *_argv(argv, workspace)], capture_output=True, text=True, cwd=workspace)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and culprit in proc.stderr
    assert not (workspace / "r").exists()


def test_the_writability_check_removes_the_folders_it_made_when_a_deeper_one_fails(tmp_path, monkeypatch):
    from seqbench.configure.options import check_writable_dir
    from seqbench.errors import UserError

    mkdir = Path.mkdir

    def refuse_c(self, *args, **kwargs):
        if self.name == "c":
            raise PermissionError(13, "Permission denied")
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_c)
    with pytest.raises(UserError, match="cannot write to --results"):
        check_writable_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []


NEED_NO_TRAINING = [case for case in MISTAKES if case[0][:1] in (("run",), ("sweep",)) and case[1] in (
    "--checkpoint-every", "--keep-checkpoints", "--threads", "--resume", "would need at least", "--num-nodes 2")]


@pytest.mark.parametrize("case", NEED_NO_TRAINING, ids=_id)
def test_checks_that_need_no_training_come_before_the_config(case, workspace, capsys, monkeypatch):
    monkeypatch.chdir(workspace)
    assert main(_argv(case[0], workspace)) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, out + err


def test_a_missing_logger_extra_is_refused_before_the_config(workspace, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    before = snapshot(workspace)
    assert main(_argv((*RUN, "--logger", "mlflow"), workspace)) == 2
    out, err = capsys.readouterr()
    assert out == "" and "pip install" in err
    assert snapshot(workspace) == before


def test_an_experiment_file_takes_every_sweep_flag_with_the_flags_own_type(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text("models = ['gru']\ntasks = ['mqar']\ncheckpoint_every = 2\nkeep_checkpoints = 3\n"
                    "params = 100000\nmax_steps = 5\nclaim_timeout = 60\njobs = 2\ngpus_per_cell = 1\n"
                    "num_nodes = 1\nretry_failed = true\ndevices = 2\nslurm_time = 90\ncpus_per_cell = 4\n"
                    "slurm_array_parallelism = 8\n")
    args = merge(load_experiment(path))
    assert (args.checkpoint_every, args.keep_checkpoints, args.params, args.max_steps) == (2, 3, "100000", 5)
    assert args.claim_timeout == 60.0 and args.retry_failed is True and args.devices == "2"
    assert (args.launch.jobs, args.launch.gpus_per_cell, args.launch.slurm_time) == (2, 1.0, "90")
    path.write_text("checkpoint_every = 'two'\n")
    with pytest.raises(Exception, match="checkpoint_every must be an integer"):
        load_experiment(path)
