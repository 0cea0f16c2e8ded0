"""ring_distance: labels checked by an independent BFS over the ring, seeding, views, config errors, mae."""

from __future__ import annotations

from collections import deque

import pytest
import torch

from seqbench.configure.config import ConfigError
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.train.runner import run
from seqbench_plugins.graph_common import position_edges
from seqbench_tasks.ring_distance import RingDistanceConfig, RingDistanceData, generate_ring_distance


def bfs_distance(num_nodes: int, source: int, target: int) -> int:
    """Hops from source to target on the ring, by breadth-first search over explicit neighbour lists."""
    neighbours = {i: ((i - 1) % num_nodes, (i + 1) % num_nodes) for i in range(num_nodes)}
    seen = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        if node == target:
            return seen[node]
        for nxt in neighbours[node]:
            if nxt not in seen:
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
    raise AssertionError("ring is disconnected")


@pytest.mark.parametrize("num_nodes", [3, 8, 21, 100])
def test_labels_match_bfs(num_nodes):
    data = generate_ring_distance(RingDistanceConfig(num_nodes=num_nodes), 300, torch.Generator().manual_seed(1))
    tokens, targets = data["tokens"], data["targets"]
    assert tokens.shape == (300, num_nodes) and targets.shape == (300,)
    assert set(tokens.unique().tolist()) <= {0, 1}
    assert (tokens.sum(1) == 2).all()  # exactly two distinct marks
    for row, label in zip(tokens, targets, strict=True):
        a, b = row.nonzero().flatten().tolist()
        assert label.item() == bfs_distance(num_nodes, a, b)
    assert targets.min() >= 1 and targets.max() <= num_nodes // 2


def test_all_distances_occur_including_the_wrap_around():
    data = generate_ring_distance(RingDistanceConfig(num_nodes=10), 2000, torch.Generator().manual_seed(0))
    assert sorted(data["targets"].unique().tolist()) == [1, 2, 3, 4, 5]
    wrapped = (data["tokens"][:, 0] == 1) & (data["tokens"][:, -1] == 1)
    assert wrapped.any() and (data["targets"][wrapped] == 1).all()  # nodes 0 and N-1 are neighbours


def test_graph_view_is_the_ring_bfs_walks():
    """The edges graph models build for this task give the same distances as the labels."""
    N = 12
    edges = position_edges(N, "ring", causal=False)
    neighbours = {i: set() for i in range(N)}
    for s, d in edges.t().tolist():
        neighbours[d].add(s)
    assert all(len(n) == 2 for n in neighbours.values())
    for source in range(N):
        dist = {source: 0}
        queue = deque([source])
        while queue:
            node = queue.popleft()
            for nxt in neighbours[node]:
                if nxt not in dist:
                    dist[nxt] = dist[node] + 1
                    queue.append(nxt)
        assert [dist[t] for t in range(N)] == [min(abs(source - t), N - abs(source - t)) for t in range(N)]


def test_generator_is_seeded_and_splits_differ(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", "off")
    config = RingDistanceConfig(num_nodes=16, num_train=64, num_val=64, num_test=64)
    first, again, other = (RingDistanceData(config, seed=s, batch_size=8) for s in (0, 0, 1))
    for d in (first, again, other):
        d.setup()
    assert torch.equal(first.splits["train"]["tokens"], again.splits["train"]["tokens"])
    assert not torch.equal(first.splits["train"]["tokens"], other.splits["train"]["tokens"])
    assert not torch.equal(first.splits["train"]["tokens"], first.splits["test"]["tokens"])
    info = first.info()
    assert (info.seq_len, info.num_classes, info.vocab_size) == (16, 9, 2)
    assert info.topology == "ring" and info.target == "sequence" and info.ordinal


def test_num_nodes_is_a_task_parameter(registries):
    config = resolve_run_config(registries, "gcn", "ring_distance", preset="smoke", overrides=["task.num_nodes=80"])
    assert config.task_config.num_nodes == 80
    with pytest.raises(ConfigError, match="task.num_nodes"):
        resolve_run_config(registries, "gcn", "ring_distance", preset="smoke", overrides=["task.num_nodes=2"])


def test_run_records_mae_consistent_with_accuracy(registries, tmp_path):
    config = resolve_run_config(registries, "graphgps", "ring_distance", preset="smoke")
    row = run(registries, config, RunOptions(results_dir=tmp_path, progress=False))
    assert row["status"] == "ok"
    assert 0.0 <= row["accuracy"] <= 1.0
    # Every wrong prediction is off by at least 1, and no distance is off by more than N // 2.
    assert 1.0 - row["accuracy"] <= row["mae"] + 1e-6
    assert row["mae"] <= config.task_config.num_nodes // 2


def test_eval_metrics_mae_is_mean_distance_error():
    from seqbench.api import ModelOutput, TaskInfo
    from seqbench.train.lit import EvalMetrics

    info = TaskInfo(name="ring_distance", vocab_size=2, seq_len=8, num_classes=5, target="sequence", causal=False,
                    topology="ring", ordinal=True)
    metrics = EvalMetrics(info)
    predicted = torch.tensor([1, 4, 2, 3])
    targets = torch.tensor([1, 2, 2, 4])
    metrics.update(ModelOutput(logits=torch.nn.functional.one_hot(predicted, 5).float()), targets, 0.5)
    result = metrics.compute("accuracy")
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["mae"] == pytest.approx((0 + 2 + 0 + 1) / 4)
    plain = EvalMetrics(TaskInfo(name="x", vocab_size=2, seq_len=8, num_classes=5, target="sequence"))
    plain.update(ModelOutput(logits=torch.randn(4, 5)), targets, 0.5)
    assert "mae" not in plain.compute("accuracy")  # only ordinal tasks have a distance to be off by
