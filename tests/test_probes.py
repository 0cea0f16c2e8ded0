"""Budget probes (seqbench.analyse.probes, ``seqbench probes``): each model's plateau step at its best
rate, the cap a claim needs, a model still rising at the probe's cap flagged rather than read."""

from __future__ import annotations

import datetime as dt
import json

from seqbench.analyse import probes
from seqbench.results import write_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def row(model, lr, *, nodes=20, stop_reason="plateau", best_val=0.5, best_val_step=400.0, val_trend=0.0,
        steps=600, max_steps=2000, wall=60.0, variant="default", task="ring_distance", seed=0):
    config = {"task_config": {"num_nodes": nodes, "vocab_size": 4}, "model_config": {"d_model": 64},
              "train": {"lr": lr, "max_steps": max_steps, "eval_every": 50, "patience": 8}}
    return {"run_id": f"{model}-{lr}-{nodes}-{max_steps}-s{seed}", "model": model, "variant": variant, "task": task,
            "task_version": 1, "preset": "cpu", "seed": seed, "status": "ok", "config_json": json.dumps(config),
            "config_hash": f"{model}{lr}{nodes}{max_steps}", "started_at": NOW, "stop_reason": stop_reason,
            "best_val": best_val, "best_val_step": best_val_step, "val_trend": val_trend, "steps": steps,
            "wall_time_s": wall, "chance": 0.1}


def test_each_model_plateaus_at_its_best_rate_and_the_cap_covers_the_latest():
    rows = [row("gcn", 1e-3, best_val=0.6, best_val_step=300.0), row("gcn", 1e-2, best_val=0.9, best_val_step=700.0),
            row("transformer", 1e-3, best_val=0.95, best_val_step=1000.0, stop_reason="target"),
            row("transformer", 1e-2, best_val=0.95, best_val_step=800.0, stop_reason="target")]
    (setting, models), = probes.plateaus(probes.probe_runs(rows)).items()
    best = {m.model: m.best for m in models}
    assert best["gcn"].lr == 1e-2  # the higher best value wins, though it peaked later
    assert best["transformer"].lr == 1e-2  # a tie on the best value: the earlier peak
    # 1.5 x the latest plateau (the transformer's 800 at its best rate, not its 1,000 at the other) = 1200
    assert probes.needed_cap(models) == 1200


def test_runs_at_the_target_rank_by_the_earliest_arrival_not_by_the_value_the_target_censored():
    # the ring probe: the Transformer at 1e-3 reached 0.992 at 2,400 steps, at 3e-3 1.000 at 3,300
    rows = [row("transformer", 1e-3, best_val=0.992, best_val_step=2400.0, stop_reason="target", max_steps=4800),
            row("transformer", 3e-3, best_val=1.0, best_val_step=3300.0, stop_reason="target", max_steps=4800),
            row("transformer", 1e-2, best_val=0.27, best_val_step=480.0, max_steps=4800)]
    (setting, (model,)), = probes.plateaus(probes.probe_runs(rows)).items()
    assert model.best.lr == 1e-3
    assert probes.needed_cap([model]) == 3600  # 1.5 x 2,400, not 1.5 x 3,300 (beyond the probe's cap)
    # without target stops the higher value wins, as before
    plain = [{**r, "stop_reason": "plateau"} for r in rows]
    (_, (model,)), = probes.plateaus(probes.probe_runs(plain)).items()
    assert model.best.lr == 3e-3


def test_a_model_still_rising_at_the_probes_cap_has_no_plateau_to_read():
    rows = [row("gcn", 1e-3, best_val_step=400.0),
            row("graphgps", 1e-3, stop_reason="budget", steps=2000, best_val_step=2000.0, val_trend=0.05)]
    (_, models), = probes.plateaus(probes.probe_runs(rows)).items()
    assert probes.needed_cap(models) is None
    text = probes.render(rows)
    assert "graphgps at lr 0.001: still rising at the probe's cap 2,000" in text and "probe longer first" in text
    # a run that ended at the cap but flat has reached its plateau
    flat = [rows[0], row("graphgps", 1e-3, stop_reason="budget", steps=2000, best_val_step=900.0, val_trend=0.002)]
    (_, models), = probes.plateaus(probes.probe_runs(flat)).items()
    assert probes.needed_cap(models) == 1350


def test_a_model_that_learned_nothing_sets_no_cap():
    """Where a model at chance peaked is noise, not a plateau: the learners set the cap, and a setting
    where none learned gets no cap but the advice to probe longer or smaller."""
    rows = [row("gcn", 1e-3, best_val=0.95, best_val_step=400.0),
            row("graphgps", 1e-3, best_val=0.15, best_val_step=1800.0)]  # chance 0.1: within 0.1 of it
    (_, models), = probes.plateaus(probes.probe_runs(rows)).items()
    assert [m.learned for m in models] == [True, False] and probes.needed_cap(models) == 600
    assert "graphgps at lr 0.001: at chance, peaked at 1,800" in probes.render(rows)
    nobody = [row("gcn", 1e-3, best_val=0.12), row("graphgps", 1e-3, best_val=0.15)]
    (_, models), = probes.plateaus(probes.probe_runs(nobody)).items()
    assert probes.needed_cap(models) is None
    assert "no model learned: probe longer, or a smaller setting" in probes.render(nobody)


def test_settings_are_told_apart_by_the_task_keys_that_vary():
    rows = [row("gcn", 1e-3, nodes=20, best_val_step=100.0), row("gcn", 1e-3, nodes=100, best_val_step=1500.0)]
    found = probes.plateaus(probes.probe_runs(rows))
    assert sorted(found) == ["ring_distance num_nodes=100", "ring_distance num_nodes=20"]
    assert probes.needed_cap(found["ring_distance num_nodes=100"]) == 2250
    text = probes.render(rows)
    assert "2 probe runs, 0.03 core-hours" in text


def test_the_claims_keep_the_probes_cap_where_it_suffices_and_later_seeds_are_not_probes():
    """The probes run at the claims' settings into the claims' folder: a need within the probe's cap keeps
    that cap (the probe's rows are then the claims' first tuning seed), a longer one raises it; the claims'
    other seeds in the folder are not read as probes, and a rerun at a longer cap supersedes the shorter."""
    fits = [row("gcn", 1e-3, best_val=0.9, best_val_step=600.0, max_steps=2000)]
    (_, models), = probes.plateaus(probes.probe_runs(fits)).items()
    assert probes.needed_cap(models) == 900 and probes.claims_caps(models) == {"gcn": 2000}
    assert "2,000: the probe's (its rows are seed 0 of the claims' grid)" in probes.render(fits)
    longer = [row("gcn", 1e-3, best_val=0.9, best_val_step=1800.0, max_steps=2000, stop_reason="plateau")]
    (_, models), = probes.plateaus(probes.probe_runs(longer)).items()
    assert probes.claims_caps(models) == {"gcn": 2700}
    assert "gcn 2,700: longer than the probe's, so the task reruns" in probes.render(longer)
    # models with caps of their own (a scoped MODEL:train.max_steps) keep them while the shared need fits
    own = [row("gcn", 1e-3, best_val=0.9, best_val_step=600.0, max_steps=2000),
           row("transformer", 1e-3, best_val=0.9, best_val_step=1000.0, max_steps=4000)]
    (_, models), = probes.plateaus(probes.probe_runs(own)).items()
    assert probes.claims_caps(models) == {"gcn": 2000, "transformer": 4000}
    assert "gcn 2,000, transformer 4,000: the probe's" in probes.render(own)
    own[1] = row("transformer", 1e-3, best_val=0.9, best_val_step=1600.0, max_steps=4000)
    (_, models), = probes.plateaus(probes.probe_runs(own)).items()
    assert probes.claims_caps(models) == {"gcn": 2400, "transformer": 4000}
    assert "gcn 2,400: longer than the probe's" in probes.render(own)
    later_seed = row("gcn", 1e-2, best_val=0.99, best_val_step=100.0, seed=3)  # a claim's seed 3: no probe
    (_, models), = probes.plateaus(probes.probe_runs([*fits, later_seed])).items()
    assert [m.best.lr for m in models] == [1e-3]
    rerun = row("gcn", 1e-3, best_val=0.95, best_val_step=2400.0, max_steps=4000)  # probed again, longer
    (_, models), = probes.plateaus(probes.probe_runs([*longer, rerun])).items()
    assert [m.best.max_steps for m in models] == [4000] and probes.claims_caps(models) == {"gcn": 4000}
    assert probes.render([later_seed]) == "No probe rows (seed 0) yet.\n"
    assert "| ring_distance | gcn | 0.01 | 3 |" in probes.render([later_seed], seed=3)


def test_the_command_replaces_only_its_section_and_refuses_a_document_without_one(cli, tmp_path):
    results = tmp_path / "probes"
    for r in [row("gcn", 1e-3), row("graphgps", 3e-3, best_val_step=900.0)]:
        write_run(results, r, [])
    doc = tmp_path / "plan.md"
    doc.write_text(f"# Plan\nbefore\n{probes.SECTION_BEGIN}\nold table\n{probes.SECTION_END}\nafter\n")
    code, out, err = cli("probes", "--results", results, "--out", doc)
    assert code == 0, err
    text = doc.read_text()
    assert text.startswith("# Plan\nbefore\n") and text.endswith(f"{probes.SECTION_END}\nafter\n")
    assert "old table" not in text and "| ring_distance | graphgps | 0.003 | 0 | plateau |" in text
    plain = tmp_path / "notes.md"
    plain.write_text("my notes\n")
    code, _, err = cli("probes", "--results", results, "--out", plain)
    assert code == 2 and "has no probes section" in err and plain.read_text() == "my notes\n"
    code, _, err = cli("probes", "--results", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err
