"""The reproduction end to end at smoke size: ``seqbench report --run`` runs the claims' sweeps through
seqbench's own commands, then renders a self-contained markdown document with its figures; and the run
summary's honest headline (soft and hard-gated accuracy beside chance)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
from rich.console import Console

from seqbench.analyse.describe import describe_task, label_distribution
from seqbench.analyse.report import load_claims
from seqbench.cli.run import print_row
from seqbench.configure.resolve import resolve_run_config
from seqbench.results import read_bench, read_curves, read_runs, write_bench_row
from seqbench.train.headline import hard_gate_collapsed, headline
from seqbench.train.runner import build_data_and_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _small_claims(tmp_path):
    """Four of the paper's claims with their sweeps cut to the fewest runs that exercise every path:
    a curve claim (TGN serial, two seeds), a ring claim (GCN, two ring sizes), a benchmark ratio
    (its rows written here: a benchmark is minutes on a loaded CPU) and a claim that needs a GPU."""
    claims = load_claims()
    by_id = {c["id"]: c for c in claims["claims"]}
    curve = {**by_id["ar-tgn-sparsification"], "sweep": {"models": "tgn", "tasks": "assoc_recall",
                                                         "variants": "serial"}}
    ring = {**by_id["ring-gcn-degrades"], "sweep": {"models": "gcn", "tasks": "ring_distance"}}
    ring["presets"] = {**ring["presets"], "smoke": {"seeds": "0", "grid": ["task.num_nodes=8,16"]}}
    bench = by_id["chunked-tgn-vs-transformer-throughput"]
    bench = {**bench, "presets": {**bench["presets"], "smoke": {"seq_len": 1024, "commands": []}}}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps({**claims, "claims": [curve, ring, bench, by_id["fig24-32k-a800"]]}))
    return path


def test_report_run_renders_a_self_contained_document(cli, tmp_path, registries):
    results, out = tmp_path / "evidence", tmp_path / "docs" / "reproduction.md"
    now = dt.datetime.now(dt.timezone.utc)
    for model, variant, rate, forced in (("transformer", "default", 1000.0, None), ("tgn", "chunked", 4000.0, 0.15)):
        write_bench_row(results, {"bench_id": model, "model": model, "variant": variant, "preset": "smoke",
                                  "mode": "infer", "seq_len": 1024, "batch_size": 1, "status": "ok",
                                  "tokens_per_sec": rate, "forced_gate_rate": forced, "device": "cpu (1 threads)",
                                  "started_at": now})
    claims = _small_claims(tmp_path)
    # an earlier rendering's figure this one does not draw (its rows gone), and another preset's
    folder = out.parent / "reproduction_figures"
    folder.mkdir(parents=True)
    (folder / "curves_mqar_smoke.png").write_bytes(PNG_MAGIC)
    (folder / "curves_mqar_cpu.png").write_bytes(PNG_MAGIC)
    argv = ("report", "--results", results, "--preset", "smoke", "--claims", claims, "--run", "--out", out)
    code, _, _ = cli(*argv)
    assert code == 0
    assert not (folder / "curves_mqar_smoke.png").exists() and (folder / "curves_mqar_cpu.png").exists()
    runs = read_runs(results).to_pylist()
    assert sorted((r["model"], r["variant"]) for r in runs) == [("gcn", "default")] * 2 + [("tgn", "serial")] * 2
    assert len(read_bench(results)) == 2  # the needs claim's GPU commands were not run
    text = out.read_text()
    assert "Thermodynamic Gated Networks (TGN): Attention as a Geometric Anti-Dissipative Force" in text
    assert "Mingyang Xu" in text and "Peking University" in text and "2026-01-21" in text
    assert "## Scale" in text and "decides nothing" in text
    assert f"--results {results} --preset smoke --run" in text and "Wall time:" in text
    assert "summed over the rows" in text and "from the first row's start to the last row's end" in text
    assert "Machine (rows' device column): cpu (" in text
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert len(rows) == 4
    needs = next(line for line in rows if "fig24-32k-a800" in line)
    assert "**needs**" in needs and "a CUDA GPU" in needs
    ratio = next(line for line in rows if "chunked-tgn-vs-transformer-throughput" in line)
    assert "4.00x" in ratio and "would be supported" in ratio
    # every figure a row links exists beside the markdown, as a PNG, and is shown in the Figures section
    links = {line.split("](")[1].split(")")[0] for line in rows if "](" in line}
    assert links == {"reproduction_figures/curves_assoc_recall_smoke.png",
                     "reproduction_figures/accuracy_vs_num_nodes_ring_distance_smoke.png",
                     "reproduction_figures/throughput_infer_smoke.png"}
    for link in links:
        assert (out.parent / link).read_bytes()[:8] == PNG_MAGIC and f"![{link.split('/')[1]}]({link})" in text
    assert "## Closing note" in text and "Still needing data or hardware" in text

    # the curves record the hard-gated pass; the row records the test split's majority-class rate (counted
    # here by describe's label_distribution: the answers only, where training scores every next token)
    tgn = [r for r in runs if r["model"] == "tgn"]
    points = [p for p in read_curves(results).to_pylist() if p["run_id"] == tgn[0]["run_id"]]
    assert any(p.get("accuracy_hard") is not None for p in points)
    config = resolve_run_config(registries, "tgn", "assoc_recall", variant="serial", preset="smoke",
                                seed=tgn[0]["seed"])
    data, info, _ = build_data_and_model(registries, config)
    test = label_distribution(data.split_data("test")["targets"], info.ignore_index, info.num_classes)
    assert tgn[0]["chance"] == test["majority_class_rate"]
    assert tgn[0]["chance"] > describe_task(registries, "assoc_recall", preset="smoke")["majority_class_rate"]

    # resumable: running again adds no row
    before = {p.name for p in (results / "runs").glob("*.parquet")}
    assert cli(*argv)[0] == 0
    assert {p.name for p in (results / "runs").glob("*.parquet")} == before
    assert pq.read_table(next((results / "runs").glob("*.parquet"))).num_rows == 1


def test_headline_says_when_hard_gated_accuracy_is_chance():
    collapsed = {"accuracy": 1.0, "accuracy_hard": 0.035, "chance": 0.032, "gate_rate": 0.0034}
    assert hard_gate_collapsed(collapsed)
    lines = headline(collapsed)
    assert lines[0].startswith("accuracy 1.000 (soft gates) | accuracy_hard 0.035") and "chance 0.032" in lines[0]
    assert "near chance (0.035 vs 0.032)" in lines[1]
    for honest in ({**collapsed, "accuracy_hard": 0.99}, {**collapsed, "accuracy": 0.1},
                   {"accuracy": 0.9, "chance": 0.1}):  # hard-gated solves it; soft is low too; an ungated model
        assert not hard_gate_collapsed(honest)
    assert headline({"accuracy": 0.9, "chance": 0.1}) == []


def test_run_summary_shows_accuracy_hard_and_chance_side_by_side():
    console = Console(record=True, width=200)
    row = {"run_id": "r", "status": "ok", "accuracy": 1.0, "accuracy_hard": 0.035, "chance": 0.032,
           "gate_rate": 0.0034, "path": "results/runs/r.parquet"}
    print_row(console, row)
    text = console.export_text()
    assert "accuracy_hard" in text and "chance" in text
    assert "warning: hard-gated accuracy is near chance" in text
    console = Console(record=True, width=200)
    print_row(console, {**row, "accuracy_hard": 0.98})
    assert "warning" not in console.export_text()


def test_report_run_gives_each_sweep_the_jobs_and_runs_benchmarks_alone(monkeypatch):
    from seqbench import cli
    from seqbench.cli.analyse import run_claim_commands

    in_process = []
    monkeypatch.setattr(cli, "main", lambda argv: in_process.append(argv) or 0)
    sweep = ["sweep", "--models", "gru", "--tasks", "mqar", "--preset", "cpu"]
    bench = ["bench", "--models", "transformer", "--preset", "cpu"]
    run_claim_commands([sweep, bench], jobs=2)
    assert in_process == [[*sweep, "--jobs", "2"], [*bench, "--missing-only"]]  # both resume


def test_report_run_stops_when_a_sweep_it_started_is_interrupted(monkeypatch):
    """A SIGTERM that stopped the first sweep must not let the report start the next (nor render): the
    second stage would choose a rate on part of a grid. The exit is the signal's, so a scheduler sees it."""
    import signal

    import pytest

    from seqbench import cli
    from seqbench.cli.analyse import run_claim_commands
    from seqbench.errors import RunInterrupted

    started = []
    monkeypatch.setattr(cli, "main", lambda argv: started.append(argv) or 143)
    with pytest.raises(RunInterrupted) as stopped:
        run_claim_commands([["sweep", "--models", "gru"], ["sweep", "--models", "tgn"]], jobs=1)
    assert len(started) == 1 and stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143


def test_the_committed_reproduction_regenerates_from_the_committed_evidence(tmp_path, monkeypatch):
    """docs/reproduction.md's verdicts are what evidence/reproduction's rows give today: change the claims, the
    statistics or the rows, and the published document must be rendered again (seqbench report)."""
    from pathlib import Path

    from seqbench.analyse.report import build_report

    root = Path(__file__).resolve().parent.parent
    published = (root / "docs" / "reproduction.md").read_text()
    monkeypatch.chdir(root)  # the document names the folder as its command gave it: evidence/reproduction
    text = build_report(load_claims(), Path("evidence/reproduction"), preset="cpu", out=tmp_path / "reproduction.md")

    def claims_onwards(document: str) -> str:
        return document[document.index("## Claims"):]

    assert claims_onwards(text) == claims_onwards(published)
    # the run spans sessions, so most claims may still lack rows; but a claim every side of which has
    # rows is measured (a selection that matched no row would read "not yet measured" everywhere)
    from seqbench.analyse.report import select_runs
    from seqbench.analyse.summary import read_verdicts
    from seqbench.results import read_cells

    runs = [r for r in read_cells(Path("evidence/reproduction"))[0] if r["preset"] == "cpu"]
    verdicts = read_verdicts(root / "docs" / "reproduction.md").verdicts
    checked = 0
    for claim in load_claims()["claims"]:
        measure = claim["measure"]
        sides = ([measure["a"], measure["b"]] if measure["kind"] == "difference"
                 else [measure] if measure["kind"] in ("value", "curve", "joint") else [])
        keys = ("model", "variant", "require", "at", "key")
        if sides and all(select_runs(runs, claim, "cpu", {k: s[k] for k in keys if k in s}) for s in sides):
            assert verdicts[claim["id"]][0] != "not yet measured", claim["id"]
            checked += 1
    assert checked >= 1  # the committed evidence holds at least one claim's rows
