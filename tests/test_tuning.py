"""Choosing a hyperparameter on validation: the validation-best value is reported, never the test-best."""

from __future__ import annotations

import json

import pytest

from seqbench.analyse import leaderboard
from seqbench.analyse.tuning import tune
from seqbench.errors import UserError
from seqbench.results import write_run

# lr -> (val_accuracy per seed, test accuracy per seed): 1e-2 is best on test, 3e-3 on validation
GRID = {1e-3: ([0.40, 0.42, 0.41], [0.40, 0.41, 0.42]),
        3e-3: ([0.80, 0.78, 0.82], [0.70, 0.72, 0.71]),
        1e-2: ([0.60, 0.61, 0.59], [0.95, 0.96, 0.94])}


def _rows(model="mamba", grid=GRID, metric="accuracy"):
    rows = []
    for lr, (val, test) in grid.items():
        for seed in range(3):
            config = {"task_config": {"seq_len": 64}, "model_config": {"d_model": 16}, "train": {"lr": lr}}
            rows.append({"run_id": f"{model}-{lr}-{seed}", "model": model, "variant": "default", "task": "mqar",
                         "preset": "smoke", "seed": seed, "status": "ok", "config_hash": f"{model}{lr}{seed}",
                         "config_json": json.dumps(config), f"val_{metric}": val[seed], metric: test[seed]})
    return rows


def test_validation_best_is_chosen_not_test_best():
    tuned = tune(_rows(), ["train.lr"])
    (choice,) = tuned.choices
    assert choice.values == {"train.lr": 3e-3} and choice.metric == "val_accuracy"
    assert {r["run_id"] for r in tuned.rows} == {f"mamba-{3e-3}-{s}" for s in range(3)}


def test_perplexity_is_chosen_lowest():
    grid = {1e-3: ([30.0, 31.0, 29.0], [10.0, 10.0, 10.0]), 1e-2: ([20.0, 21.0, 19.0], [50.0, 50.0, 50.0])}
    (choice,) = tune(_rows(grid=grid, metric="perplexity"), ["train.lr"]).choices
    assert choice.values == {"train.lr": 1e-2} and choice.metric == "val_perplexity"


def test_each_model_is_tuned_on_its_own():
    other = {1e-3: ([0.9, 0.9, 0.9], [0.5, 0.5, 0.5]), 1e-2: ([0.1, 0.1, 0.1], [0.9, 0.9, 0.9])}
    tuned = tune(_rows() + _rows("gru", other), ["train.lr"])
    assert {c.group["model"]: c.values["train.lr"] for c in tuned.choices} == {"mamba": 3e-3, "gru": 1e-3}


def test_a_tie_on_validation_accuracy_goes_to_the_lower_validation_loss():
    solved = {1e-3: ([1.0, 1.0, 1.0], [0.9, 0.9, 0.9]), 1e-2: ([1.0, 1.0, 1.0], [0.2, 0.2, 0.2])}
    rows = _rows(grid=solved)
    for row in rows:  # 1e-3 has the lower validation loss; as text, "0.01" would sort after "0.001"
        row["val_loss"] = 0.01 if '"lr": 0.001' in row["config_json"] else 0.05
    (choice,) = tune(rows, ["train.lr"]).choices
    assert choice.values == {"train.lr": 1e-3}
    for row in rows:
        row["val_loss"] = 0.05 if '"lr": 0.001' in row["config_json"] else 0.01
    assert tune(rows, ["train.lr"]).choices[0].values == {"train.lr": 1e-2}
    assert tune(list(reversed(rows)), ["train.lr"]).choices[0].values == {"train.lr": 1e-2}  # not row order


def _stopped(rows, how):
    """Give each row a stop_reason and steps: how[lr] = (stop_reason, steps)."""
    for row in rows:
        lr = json.loads(row["config_json"])["train"]["lr"]
        row["stop_reason"], row["steps"] = how[lr]
    return rows


def test_values_that_all_stopped_at_the_target_are_chosen_by_fewer_steps_not_the_censored_score():
    # zoology's grid at seed 0: 4.64e-4 at val 0.99200 after 2,744 steps, 1e-2 at 0.99175 after 1,323;
    # both stopped on crossing 0.99, so the third decimal says where the last evaluation fell
    grid = {4.64e-4: ([0.99200] * 3, [0.5] * 3), 1e-2: ([0.99175] * 3, [0.9] * 3), 1e-4: ([0.45] * 3, [0.4] * 3)}
    rows = _stopped(_rows(grid=grid), {4.64e-4: ("target", 2744), 1e-2: ("target", 1323), 1e-4: ("plateau", 5145)})
    (choice,) = tune(rows, ["train.lr"]).choices
    assert choice.values == {"train.lr": 1e-2}
    assert choice.to_target == {json.dumps({"train.lr": 4.64e-4}): 2744.0, json.dumps({"train.lr": 1e-2}): 1323.0}
    # without the target stop the same scores choose the higher one, as before
    plain = _stopped(_rows(grid=grid), {4.64e-4: ("budget", 3000), 1e-2: ("budget", 3000), 1e-4: ("budget", 3000)})
    assert tune(plain, ["train.lr"]).choices[0].values == {"train.lr": 4.64e-4}


def test_a_value_that_missed_the_target_at_one_seed_ranks_below_one_that_reached_it_at_every_seed():
    grid = {1e-3: ([0.995, 0.995, 0.95], [0.9] * 3), 1e-2: ([0.991] * 3, [0.9] * 3)}
    rows = _stopped(_rows(grid=grid), {1e-3: ("target", 500), 1e-2: ("target", 2000)})
    for row in rows:  # 1e-3's seed 2 ran out of steps at 0.95
        if '"lr": 0.001' in row["config_json"] and row["seed"] == 2:
            row["stop_reason"], row["steps"] = "budget", 4000
    (choice,) = tune(rows, ["train.lr"]).choices
    assert choice.values == {"train.lr": 1e-2} and list(choice.to_target) == [json.dumps({"train.lr": 1e-2})]
    # choosing at seeds 0 and 1 only, both reached it: the faster one
    assert tune(rows, ["train.lr"], on_seeds={0, 1}).choices[0].values == {"train.lr": 1e-3}


def test_the_hard_gated_metric_is_not_censored_by_a_target_on_soft_accuracy():
    grid = {1e-3: ([0.99] * 3, [0.9] * 3), 1e-2: ([0.99] * 3, [0.9] * 3)}
    rows = _stopped(_rows(grid=grid), {1e-3: ("target", 2000), 1e-2: ("target", 500)})
    for row in rows:
        row["val_accuracy_hard"] = 0.9 if '"lr": 0.001' in row["config_json"] else 0.3
    (choice,) = tune(rows, ["train.lr"], metric="val_accuracy_hard").choices
    assert choice.values == {"train.lr": 1e-3} and choice.to_target == {}


def test_unknown_key_is_a_user_error():
    with pytest.raises(UserError, match="--tune train.learning_rate: no run has that setting"):
        tune(_rows(), ["train.lr", "train.learning_rate"])


def test_leaderboard_reports_the_chosen_rate_and_its_test_score(cli, tmp_path):
    for row in _rows():
        write_run(tmp_path, {**row, "task_version": 1}, [])
    board = leaderboard.build(_rows(), tune=("train.lr",))
    (entry,) = board.entries
    assert entry.tuned == {"train.lr": 3e-3} and entry.score.mean == pytest.approx(0.71)
    untuned = leaderboard.build(_rows())
    assert len(untuned.entries) == 3  # without --tune every rate is its own entry
    code, out, _ = cli("leaderboard", "--results", tmp_path, "--tune", "train.lr")
    assert code == 0 and "train.lr=0.003" in out and "0.710" in out and "0.950" not in out
    assert "chosen per model on val_accuracy" in out
    code, _, err = cli("leaderboard", "--results", tmp_path, "--tune", "train.lrr")
    assert code == 2 and "train.lrr" in err


def test_figures_draw_only_the_validation_chosen_rate(cli, tmp_path, monkeypatch):
    """A figure's curve is the mean over seeds of one configuration: the rate chosen on validation."""
    from seqbench.analyse import plots

    for row in _rows():
        curve = [{"step": float(s), "accuracy": row["accuracy"] * s / 20, "loss": 1.0} for s in (10, 20)]
        write_run(tmp_path, {**row, "task_version": 1}, curve)
    drawn = []
    real = plots._plot_series
    monkeypatch.setattr(plots, "_plot_series", lambda ax, by_step, model, variant, setting, metric: (
        drawn.append((setting, sorted(by_step.items()))), real(ax, by_step, model, variant, setting, metric)))
    assert cli("plot", "--results", tmp_path, "--tune", "train.lr", "--out", tmp_path / "tuned")[0] == 0
    ((setting, points),) = drawn
    test = GRID[3e-3][1]
    assert setting == "train.lr=0.003" and points[-1] == (20.0, pytest.approx(test))  # 3 seeds of lr 3e-3 only
    drawn.clear()
    assert cli("plot", "--results", tmp_path, "--out", tmp_path / "all")[0] == 0
    assert len(drawn[0][1][-1][1]) == 9  # untuned: every rate's runs in one series (what --tune avoids)
