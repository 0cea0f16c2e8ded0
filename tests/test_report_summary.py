"""The summary a claims document opens with (seqbench.analyse.summary): per claim group one line, what is
still missing, the cost in core-hours, and what changed since an earlier rendering read back from its
claims table (``seqbench report --since``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from seqbench.analyse.report import Measured, build_report, check_claims, load_claims
from seqbench.analyse.summary import Earlier, cited, claim_group, core_seconds, head, read_verdicts, summary_lines
from seqbench.errors import UserError
from seqbench.results import iter_rows, read_bench, read_cells

ROOT = Path(__file__).resolve().parent.parent
FIRST = ROOT / "docs" / "history" / "reproduction-2026-11-29.md"
CLAIMS = load_claims()
BY_ID = {c["id"]: c for c in CLAIMS["claims"]}


def test_the_first_reproduction_reads_back_as_its_nine_nine_nine():
    earlier = read_verdicts(FIRST)
    verdicts = [v for v, _ in earlier.verdicts.values()]
    assert len(verdicts) == 35 and earlier.rendered == "2026-11-29 14:25 UTC"
    assert {v: verdicts.count(v) for v in set(verdicts)} == {"supported": 9, "contradicted": 9, "inconclusive": 9,
                                                             "needs": 8}
    assert earlier.verdicts["ar-tgn-accuracy"] == ("supported", "1.000 ± 0.000 (95% Student-t interval); chosen on "
                                                                "validation: train.lr=0.01")


def test_any_rendered_document_reads_back_escaped_pipes_included(tmp_path):
    current = read_verdicts(ROOT / "docs" / "reproduction.md")  # today's format, whatever the evidence holds
    assert len(current.verdicts) == len(CLAIMS["claims"])
    needs = {c["id"] for c in CLAIMS["claims"] if c["measure"]["kind"] == "needs"}
    assert needs and all(current.verdicts[i][0] == "needs" and current.verdicts[i][1].startswith("needs ")
                         for i in needs)
    doc = tmp_path / "old.md"
    doc.write_text("# Reproduction\n\n| claim | paper says | paper value | measured | seeds | verdict |\n|---|\n"
                   "| **x-1**: a \\| b | here | 1 | 0.5 \\| 0.6 | 3 | **contradicted** | rule |\n")
    assert read_verdicts(doc) == Earlier(str(doc), None, {"x-1": ("contradicted", "0.5 | 0.6")})


@pytest.mark.parametrize("content", [None, "# a document\n\nno table here\n", b"\xff\xfe\x00bad"])
def test_an_unreadable_or_tableless_since_is_one_clear_user_error(tmp_path, content):
    path = tmp_path / "old.md"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match="--since"):
        read_verdicts(path)


def test_groups_default_to_the_task_throughput_or_needs_and_a_claim_may_name_its_own():
    assert claim_group(BY_ID["ar-tgn-accuracy"]) == "assoc_recall"
    assert claim_group(BY_ID["mamba-vs-chunked-tgn-throughput"]) == "throughput"
    assert claim_group(BY_ID["wt103-125m-perplexity"]) == "needs data or hardware"
    assert claim_group({**BY_ID["ar-tgn-accuracy"], "group": "§6.2 recall"}) == "§6.2 recall"
    assert cited([BY_ID["ar-tgn-accuracy"], BY_ID["ar-tgn-vs-rnn"], BY_ID["ring-gcn-chance"]]) == \
        "§6.2, Fig. 19; §4.2, Fig. 7"
    bad = copy.deepcopy(CLAIMS)
    bad["claims"][0]["group"] = ""
    with pytest.raises(UserError, match="group must be a non-empty string"):
        check_claims(bad, "claims.json")


def outcome(claim_id, verdict, text, why=None, need=None):
    return BY_ID[claim_id], Measured(verdict, text, "3", why=why, need=need)


def test_the_summary_gives_per_group_counts_the_missing_cells_the_cost_and_what_changed():
    outcomes = [
        outcome("ar-tgn-accuracy", "supported", "3/3 seeds at 1.000; chosen on validation: train.lr=0.01"),
        outcome("ar-tgn-vs-rnn", "budget-limited", "+0.797 ± 0.045 (paired) — would be supported",
                why="gru still improving at the budget: seed 0 +0.037; what it would take: ≈ 18,000 steps",
                need="≈ 18,000 steps, ~26.5 core-hours here"),
        outcome("ring-transformer-vs-gcn", "not yet measured", "no ok runs of transformer with accuracy"),
        outcome("ring-control-graphgps-2-layers", "not yet measured", "no ok runs of graphgps with accuracy"),
        outcome("wt103-125m-perplexity", "needs", "needs WikiText-103"),
    ]
    runs = [{"wall_time_s": 1800.0, "threads": 2}, {"wall_time_s": 3600.0, "threads": 1}]
    bench = [{"wall_time_s": 360.0, "device": "cpu (1 threads)"}]
    earlier = Earlier("old.md", "2026-11-29 14:25 UTC", {
        "ar-tgn-accuracy": ("supported", "1.000 ± 0.000"), "ar-tgn-vs-rnn": ("supported", "+0.802 ± 0.040 (paired)"),
        "ring-transformer-vs-gcn": ("supported", "+0.607 ± 0.383"), "wt103-125m-perplexity": ("needs", "needs it"),
        "gone-claim": ("contradicted", "0.1")})
    text = "\n".join(summary_lines(CLAIMS, outcomes, runs, bench, "cpu", earlier))
    assert text.startswith("## Summary\n\n5 claims: 1 supported, 1 budget-limited, 2 not yet measured, 1 needs. ")
    assert ("Still missing: 2 claims not yet measured, their cells not yet in the results (ring-transformer-vs-gcn, "
            "ring-control-graphgps-2-layers).") in text
    assert "Cost: 2.10 core-hours (wall_time_s × threads summed over the 2 run rows and 1 bench row" in text
    assert ("- **assoc_recall** (§6.2, Fig. 19), 2 claims: 1 supported (ar-tgn-accuracy (3/3 seeds at 1.000)); "
            "1 budget-limited (ar-tgn-vs-rnn (≈ 18,000 steps, ~26.5 core-hours here))") in text
    assert "- **ring_distance** (§4.2, Fig. 7), 2 claims: 2 not yet measured (ring-transformer-vs-gcn, " in text
    assert "1 needing data or hardware this machine lacks (wt103-125m-perplexity)" in text
    assert ("Since old.md (rendered 2026-11-29 14:25 UTC; 5 claims there): 2 verdicts changed, 1 new claim, "
            "1 claim no longer in the claims file, 2 unchanged.") in text
    # why: the gate's reason (what it would take stays in the claim's row), the old value beside it
    assert ("- **ar-tgn-vs-rnn**: supported → budget-limited — gru still improving at the budget: seed 0 +0.037 "
            "(was +0.802 ± 0.040)") in text
    assert ("- **ring-transformer-vs-gcn**: supported → not yet measured — no ok runs of transformer with accuracy "
            "(was +0.607 ± 0.383)") in text
    assert "- **ring-control-graphgps-2-layers**: new claim, now not yet measured" in text
    assert "- **gone-claim**: no longer a claim (was contradicted)" in text
    assert "ar-tgn-accuracy**: supported →" not in text


def test_value_heads_and_core_seconds():
    assert head("+0.797 ± 0.045 (paired 95% t-interval); exact sign-flip p = 0.25") == "+0.797 ± 0.045"
    assert head("3.70x (303,829 / 82,130 tokens/s)") == "3.70x"
    assert head("1.000 ± 0.000 (95% Student-t interval)") == "1.000 ± < 0.0005"  # the first reproduction's rounding
    assert core_seconds({"wall_time_s": 10.0, "device": "cpu (4 threads)"}) == 40.0
    assert core_seconds({"wall_time_s": None}) == 0.0


def test_the_reproduction_opens_with_its_summary_and_what_changed_since_the_first(monkeypatch, tmp_path):
    """On the committed evidence, whatever it holds: the summary agrees with the document's own table."""
    monkeypatch.chdir(ROOT)
    results = Path("evidence/reproduction")
    text = build_report(CLAIMS, results, preset="cpu", since=read_verdicts(FIRST))
    assert text.index("## Summary") < text.index("## Scale") < text.index("## Claims")
    summary = text[text.index("## Summary"):text.index("## Scale")]
    runs = [r for r in read_cells(results)[0] if r["preset"] == "cpu"]
    bench = [r for r in iter_rows(read_bench(results)) if r["preset"] == "cpu"]
    hours = sum(core_seconds(r) for r in [*runs, *bench]) / 3600
    assert f"Cost: {hours:,.2f} core-hours" in summary and f"over the {len(runs)} run rows" in summary
    groups = {claim_group(c) for c in CLAIMS["claims"]}
    assert sum(line.startswith(f"- **{g}**") for g in groups for line in summary.splitlines()) == len(groups)
    (tmp_path / "now.md").write_text(text)
    old, new = read_verdicts(FIRST).verdicts, read_verdicts(tmp_path / "now.md").verdicts
    assert f"Since {FIRST} (rendered 2026-11-29 14:25 UTC; 35 claims there)" in summary
    for claim_id, (verdict, _) in new.items():
        if claim_id not in old:
            assert f"- **{claim_id}**: new claim, now {verdict} — " in summary
        elif old[claim_id][0] != verdict:
            assert f"- **{claim_id}**: {old[claim_id][0]} → {verdict} — " in summary
        else:
            assert f"- **{claim_id}**: {old[claim_id][0]} →" not in summary
    missing = [cid for cid, (verdict, _) in new.items() if verdict == "not yet measured"]
    assert (f"Still missing: {len(missing)} claim" in summary) if missing else ("No cell is missing" in summary)


def test_report_since_on_the_command_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "r.md"
    code, _, err = cli("report", "--results", "evidence/reproduction", "--preset", "cpu", "--out", out,
                       "--since", FIRST)
    assert code == 0, err
    text = out.read_text()
    assert f"--since {FIRST}" in text and f"Since {FIRST} (rendered 2026-11-29 14:25 UTC; 35 claims there)" in text
    code, _, err = cli("report", "--results", "evidence/reproduction", "--preset", "cpu", "--out", tmp_path / "no.md",
                       "--since", tmp_path / "nowhere.md")
    assert code == 2 and "cannot read --since" in err and not (tmp_path / "no.md").exists()


def _cell(model, seed, lr, nodes=100, status="ok", variant="default"):
    import json

    # the ring claims' cpu settings (seqbench/analyse/claims/paper.json), so that the claims select the row
    train = {key.removeprefix("train."): float(value) for key, _, value in
             (item.partition("=") for item in BY_ID["ring-gcn-degrades"]["presets"]["cpu"]["set"])
             if key.startswith("train.")}
    config = {"task_config": {"num_nodes": nodes}, "model_config": {}, "train": {**train, "lr": lr}}
    return {"run_id": f"{model}-{seed}-{lr}-{nodes}", "model": model, "variant": variant, "task": "ring_distance",
            "preset": "cpu", "seed": seed, "status": status, "config_json": json.dumps(config),
            "param_budget": 50_000}


def test_the_summary_counts_the_cells_still_to_run_each_once():
    """A run spanning sessions renders from part of its cells: the summary says how many, counting a model's
    cells once however many claims read them (the GCN's serve the ring claims and their 2-layer controls)."""
    from seqbench.analyse.report import cell_progress
    from seqbench.analyse.summary import cells_text

    main, control = BY_ID["ring-gcn-degrades"], BY_ID["ring-control-transformer-2-layers"]
    assert main["tune_seed"] == [0, 1] and main["presets"]["cpu"]["seeds"] == "0,1,2,3,4"
    # two GCN cells of the grid at the tuning seeds, one diverged (it ran: finished), one of another preset
    rows = [_cell("gcn", 0, 1e-3), _cell("gcn", 1, 1e-3, status="diverged"), {**_cell("gcn", 2, 1e-3), "preset": "x"}]
    progress = {c["id"]: cell_progress(c, rows, "cpu") for c in (main, control)}
    gcn = [v for k, v in progress[main["id"]].items() if k.startswith('["gcn"')]
    # the grid (3 sizes x 5 rates) at seeds 0 and 1, then each size at the chosen rate at seeds 2-4
    assert gcn == [(2, 3 * 5 * 2 + 3 * 3)] and len(progress[main["id"]]) == 3 and len(progress[control["id"]]) == 2
    text = cells_text([(main, None), (control, None)], progress)
    # gcn, transformer at 1 layer, graphgps, transformer at 2 layers: 4 x 39 cells, the gcn's counted once
    assert text.startswith("Cells: 2 of 156 finished, 154 still to run") and "ring-control-transformer-2-layers" in text
    unstaged = {k: v for k, v in copy.deepcopy(main).items() if k != "tune_seed"}
    # without tune_seed every seed runs the whole grid
    assert {v for v in cell_progress(unstaged, rows, "cpu").values()} >= {(2, 3 * 5 * 5)}
