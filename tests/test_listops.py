"""ListOps: every label checked by an independent stack-machine evaluator, the tree distribution compared
with a recursive LRA-style reference sampler, and the splits' lengths, padding and de-duplication."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from seqbench.cli import main
from seqbench.configure.config import ConfigError
from seqbench.errors import UserError
from seqbench.train.data import row_digests
from seqbench_tasks.listops import ListOpsConfig, ListOpsData, decode, generate_listops

NAMES = {11: "MIN", 12: "MAX", 13: "MED", 14: "SM"}


def stack_evaluate(row: list[int], max_args: int) -> tuple[int, int, int]:
    """(value, token count, depth) of one left-padded sequence, by a stack machine over its tokens.

    Independent of the generator: it reads tokens left to right and never builds a tree.
    """
    tokens = [t for t in row if t != 0]
    assert row[: len(row) - len(tokens)] == [0] * (len(row) - len(tokens)), "padding must all be on the left"
    stack: list[tuple[str, list[int]]] = []
    result, depth = None, 0
    for token in tokens:
        assert result is None, "tokens after the expression ended"
        if token in NAMES:
            stack.append((NAMES[token], []))
            depth = max(depth, len(stack))
            continue
        if token == 15:
            op, args = stack.pop()
            assert 2 <= len(args) <= max_args, f"{op} with {len(args)} arguments"
            value = {"MIN": min, "MAX": max, "SM": lambda a: sum(a) % 10,
                     "MED": lambda a: int(statistics.median(a))}[op](args)
        else:
            assert 1 <= token <= 10, f"unknown token {token}"
            value = token - 1
            depth = max(depth, len(stack) + 1)
        if stack:
            stack[-1][1].append(value)
        else:
            result = value
    assert result is not None and not stack, "unbalanced expression"
    return result, len(tokens), depth


def check_split(data: dict[str, torch.Tensor], c: ListOpsConfig) -> None:
    assert data["tokens"].shape == (len(data["targets"]), c.max_len)
    for row, label in zip(data["tokens"].tolist(), data["targets"].tolist()):
        value, length, depth = stack_evaluate(row, c.max_args)
        assert value == label
        assert c.min_len <= length <= c.max_len
        assert depth <= c.max_depth


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("config", [
    ListOpsConfig(min_len=5, max_len=32, num_train=300, num_val=100, num_test=100),
    ListOpsConfig(min_len=60, max_len=300, max_depth=6, max_args=5, num_train=300, num_val=50, num_test=50),
])
def test_every_label_matches_the_independent_evaluator(config):
    data = ListOpsData(config, seed=0, batch_size=8)
    data.setup()
    for split in ("train", "val", "test"):
        check_split(data.splits[split], config)
        assert len(data.splits[split]["targets"]) == getattr(config, f"num_{split}")


def test_splits_are_distinct_within_and_across():
    c = ListOpsConfig(min_len=3, max_len=8, num_train=400, num_val=100, num_test=100)  # short: collisions likely
    data = ListOpsData(c, seed=0, batch_size=8)
    data.setup()
    digests = {split: row_digests(data.splits[split]["tokens"]) for split in ("train", "val", "test")}
    for split, rows in digests.items():
        assert len(set(rows)) == len(rows), split
    assert not set(digests["train"]) & set(digests["val"])
    assert not (set(digests["train"]) | set(digests["val"])) & set(digests["test"])


def test_an_exhausted_length_range_is_a_user_error():
    c = ListOpsConfig(min_len=4, max_len=4, num_train=500)  # [OP d d ]: only 4 * 100 expressions exist
    with pytest.raises(UserError, match="only 400 of 500"):
        ListOpsData(c, seed=0, batch_size=8).setup()


def test_worked_example_in_the_docstring():
    tokens = torch.tensor([0, 0, 0, 12, 3, 10, 11, 5, 8, 15, 1, 15])
    assert decode(tokens) == "[MAX 2 9 [MIN 4 7 ] 0 ]"
    assert stack_evaluate(tokens.tolist(), max_args=10) == (9, 9, 3)  # the leaves 4 and 7 sit at depth 3


def lra_reference_tree(depth: int, c: ListOpsConfig, rng: random.Random) -> tuple[int, int, int, int]:
    """LRA's generate_tree, restated recursively: (value, token count, depth, root's argument count)."""
    if depth < c.max_depth and rng.random() < c.op_prob:
        args = [lra_reference_tree(depth + 1, c, rng) for _ in range(rng.randint(2, c.max_args))]
        values = [a[0] for a in args]
        op = rng.choice(["MIN", "MAX", "MED", "SM"])
        value = {"MIN": min(values), "MAX": max(values), "MED": int(np.median(values)), "SM": sum(values) % 10}[op]
        return value, 2 + sum(a[1] for a in args), 1 + max(a[2] for a in args), len(args)
    return rng.randint(0, 9), 1, 1, 0


def root_arity(row: list[int]) -> int:
    depth = count = 0
    for token in row:
        if token in NAMES:
            depth += 1
        elif token == 15:
            depth -= 1
            count += depth == 1
        elif token != 0:
            count += depth == 1
    return count


def total_variation(a, b, n: int = 12) -> float:
    return 0.5 * np.abs(np.bincount(a, minlength=n) / len(a) - np.bincount(b, minlength=n) / len(b)).sum()


def test_tree_distribution_matches_a_recursive_reference_sampler():
    c = ListOpsConfig(min_len=10, max_len=80, max_depth=6)  # depth 6 keeps the recursive reference fast
    rng = random.Random(0)
    reference = []
    while len(reference) < 4000:
        tree = lra_reference_tree(1, c, rng)
        if c.min_len <= tree[1] <= c.max_len:
            reference.append(tree)
    ours = generate_listops(c, 4000, np.random.default_rng(0))
    rows = ours["tokens"].tolist()
    ref_values, ref_lengths, ref_depths, ref_arities = (np.array(column) for column in zip(*reference))
    lengths = (ours["tokens"] != 0).sum(dim=1).numpy()
    # Two samples of 4000 from one distribution differ by ~0.01-0.02 in total variation; op_prob 0.3,
    # max_args 8 or max_depth 5 instead of LRA's values move the depth or root-arity distance to >= 0.064.
    assert total_variation(ours["targets"].numpy(), ref_values, 10) < 0.05
    assert total_variation([stack_evaluate(r, c.max_args)[2] for r in rows], ref_depths) < 0.045
    assert total_variation([root_arity(r) for r in rows], ref_arities) < 0.045
    assert abs(lengths.mean() / ref_lengths.mean() - 1) < 0.05


def test_generation_is_deterministic_and_seeded():
    c = ListOpsConfig(min_len=5, max_len=32, num_train=64, num_val=16, num_test=16)
    a, b, other = (ListOpsData(c, seed=s, batch_size=8) for s in (4, 4, 5))
    assert a.data_fingerprint() == b.data_fingerprint() != other.data_fingerprint()


def test_info_is_a_left_padded_sequence_task():
    info = ListOpsData(ListOpsConfig(max_len=64), seed=0, batch_size=8).info()
    assert (info.num_classes, info.seq_len, info.target, info.pad_id) == (10, 64, "sequence", 0)


@pytest.mark.parametrize("overrides, field", [
    ({"min_len": 50, "max_len": 40}, "task.max_len"),
    ({"max_depth": 2, "max_args": 3, "min_len": 9}, "task.min_len"),  # depth 2, 3 args: at most 5 tokens
    ({"max_args": 1}, "task.max_args"),
    ({"op_prob": 1.0}, "task.op_prob"),
])
def test_impossible_configs_are_rejected(overrides, field):
    with pytest.raises(ConfigError, match=field):
        ListOpsConfig(**overrides)


def test_describe_reports_the_label_distribution(capsys):
    assert main(["describe", "--task", "listops", "--preset", "smoke", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_examples"] == 256 and report["num_classes"] == 10 and report["seq_len"] == 32
    shares = report["label_distribution"]
    assert set(shares) == {str(d) for d in range(10)}
    assert abs(sum(shares.values()) - 1) < 1e-4
    assert report["majority_class_rate"] == pytest.approx(max(shares.values()), abs=1e-6)
    assert report["train_split_from"] == "generated"
    assert main(["describe", "--task", "listops", "--preset", "smoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train_split_from"] == "cache"


def test_describe_rejects_model_overrides(capsys):
    assert main(["describe", "--task", "listops", "--set", "model.d_model=8"]) == 2
    assert "only task.*" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = "import sys; from seqbench.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
