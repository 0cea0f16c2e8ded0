"""Graph models: the graph they build, causality on chains, receptive fields on rings, third-party refusal."""

from __future__ import annotations

import pytest
import torch

from seqbench.api import TaskInfo
from seqbench.configure.resolve import resolve_run_config
from seqbench.errors import UserError
from seqbench.hookspecs import hookimpl
from seqbench.registry import ModelSpec, build_registries
from seqbench_plugins.gcn import GCNConfig
from seqbench_plugins.gcn import build as build_gcn
from seqbench_plugins.graph_common import PositionGraph, laplacian_pe, position_edges
from seqbench_plugins.graphgps import GraphGPSConfig
from seqbench_plugins.graphgps import build as build_graphgps
from seqbench_plugins.transformer import TransformerConfig
from seqbench_plugins.transformer import build as build_transformer


def ring_info(num_nodes: int, target: str = "sequence") -> TaskInfo:
    classes = num_nodes // 2 + 1 if target == "sequence" else 3
    return TaskInfo(name="ring", vocab_size=2, seq_len=num_nodes, num_classes=classes, target=target, causal=False,
                    topology="ring")


# ------------------------------------------------------------------------------------- the graph


def test_causal_chain_edges_only_point_forward():
    edges = position_edges(10, "chain", causal=True)
    assert (edges[0] < edges[1]).all() and edges.shape == (2, 9)
    both = position_edges(10, "chain", causal=False)
    assert both.shape == (2, 18) and (both[0] > both[1]).any()
    with pytest.raises(ValueError, match="causal"):
        position_edges(10, "ring", causal=True)


def test_batched_edges_stay_inside_each_graph_and_are_cached():
    graph = PositionGraph(ring_info(5))
    edge_index, batch = graph(3, 5, torch.device("cpu"))
    assert edge_index.shape == (2, 3 * 10) and batch.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(batch[edge_index[0]], batch[edge_index[1]])  # no edge joins two examples
    assert torch.equal(edge_index[:, 10:20] - 5, edge_index[:, :10])  # graph 1 is graph 0 shifted by T
    assert graph(3, 5, torch.device("cpu"))[0] is edge_index


# --------------------------------------------------------------------------------- causality


def causal_info() -> TaskInfo:
    return TaskInfo(name="chain", vocab_size=8, seq_len=16, num_classes=8, target="token", causal=True)


CAUSAL_MODELS = {
    "gcn": lambda info: build_gcn(GCNConfig(d_model=16), info),
    "graphgps": lambda info: build_graphgps(GraphGPSConfig(d_model=16, n_heads=2, n_layers=2), info),
    "graphgps-gcn-local": lambda info: build_graphgps(GraphGPSConfig(d_model=16, n_heads=2, local="gcn"), info),
}


@pytest.mark.parametrize("name", sorted(CAUSAL_MODELS))
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_chain_graph_models_are_causal(name, training):
    """Changing token t+1 leaves outputs <= t unchanged, in train mode too (norms are per node).

    Each pass starts from the same RNG state: in training GraphGPS flips its eigenvectors' signs at
    random, which changes every output, past and future alike, and is not what this test is about.
    """
    torch.manual_seed(0)
    info = causal_info()
    module = CAUSAL_MODELS[name](info).train(training)
    tokens = torch.randint(0, 8, (4, 16))

    def forward(batch):
        torch.manual_seed(1)
        return module(batch)

    with torch.no_grad():
        before = forward(tokens)
        for t in (0, 7, 14):
            changed = tokens.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1) % 8
            after = forward(changed)
            torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])


def test_the_causality_check_catches_a_bidirectional_graphgps():
    """Control: the same model on a non-causal chain does see the future, so the check above can fail."""
    torch.manual_seed(0)
    info = TaskInfo(name="chain", vocab_size=8, seq_len=16, num_classes=8, target="token", causal=False)
    module = build_graphgps(GraphGPSConfig(d_model=16, n_heads=2), info).eval()
    tokens = torch.randint(0, 8, (4, 16))
    changed = tokens.clone()
    changed[:, 8] = (changed[:, 8] + 1) % 8
    with torch.no_grad():
        assert not torch.allclose(module(changed)[:, :8], module(tokens)[:, :8], atol=1e-5)


# ---------------------------------------------------------------------------- receptive field

N, K = 24, 3  # ring size; GCN layers = hops it can see


def models_on(info: TaskInfo) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"gcn": build_gcn(GCNConfig(d_model=16, n_layers=K), info).eval(),
            "graphgps": build_graphgps(GraphGPSConfig(d_model=16, n_heads=2, n_layers=1), info).eval(),
            "transformer": build_transformer(TransformerConfig(d_model=16, n_heads=2, n_layers=1), info).eval()}


def ring(*marks: int) -> torch.Tensor:
    tokens = torch.zeros(1, N, dtype=torch.long)
    tokens[0, list(marks)] = 1
    return tokens


def test_node_outputs_of_a_k_layer_gcn_cannot_see_beyond_k_hops():
    """The output at the last node (N-1) under a mark placed > K hops from it, and one within K hops."""
    models = models_on(ring_info(N, target="token"))
    base = ring(N - 1)
    far, near = ring(N - 1, N // 2), ring(N - 1, K - 1)  # N // 2 is 12 hops from N-1; K-1 is K hops via the wrap
    with torch.no_grad():
        out = {name: [m(x)[0, -1] for x in (base, far, near)] for name, m in models.items()}
    torch.testing.assert_close(out["gcn"][1], out["gcn"][0], atol=1e-6, rtol=0)
    assert not torch.allclose(out["gcn"][2], out["gcn"][0], atol=1e-4)  # within reach it does react
    for name in ("graphgps", "transformer"):  # global attention reaches every node
        assert not torch.allclose(out[name][1], out[name][0], atol=1e-4), name


def test_ring_distance_prediction_of_a_k_layer_gcn_ignores_where_the_far_mark_is():
    """Marks more than 2K hops apart: a K-layer GCN gives the same logits whatever the distance,
    so it cannot tell 8 from 11 hops; GraphGPS and the Transformer see the difference."""
    models = models_on(ring_info(N))
    pairs = [ring(0, 8), ring(0, 11), ring(5, 14), ring(3, 23 - 7 + 3)]  # distances 8, 11, 9, 8 (> 2K = 6)
    with torch.no_grad():
        logits = {name: [m(x)[0] for x in pairs] for name, m in models.items()}
    for other in logits["gcn"][1:]:
        torch.testing.assert_close(other, logits["gcn"][0], atol=1e-5, rtol=1e-5)
    close = ring(0, 4)  # 4 hops: inside the GCN's reach, so the logits move
    with torch.no_grad():
        assert not torch.allclose(models["gcn"](close)[0], logits["gcn"][0], atol=1e-4)
    for name in ("graphgps", "transformer"):
        assert not torch.allclose(logits[name][1], logits[name][0], atol=1e-4), name


# ---------------------------------------------------------------------------- model x task


def test_no_builtin_pair_is_refused(registries):
    for model in registries.models.names():
        for task in registries.tasks.names():
            resolve_run_config(registries, model, task, preset="smoke")


class ImageModelPlugin:
    @hookimpl
    def seqbench_register_models(self, registry):
        registry.add(ModelSpec("pixel_cnn", build="nowhere:build", config="nowhere:Config",
                               description="a third-party model that only takes images",
                               inputs=frozenset({"image"})))


def test_third_party_model_without_a_common_view_is_refused_before_training():
    registries = build_registries(extra_plugins=(ImageModelPlugin(),))
    with pytest.raises(UserError, match=r"'pixel_cnn' takes image input, but task 'ring_distance' offers graph, "
                                        r"tokens"):
        resolve_run_config(registries, "pixel_cnn", "ring_distance", preset="smoke")


@pytest.mark.parametrize("num_nodes", [12, 120])  # the dense and the sparse (ARPACK) eigen-solver paths
def test_laplacian_pe_is_reproducible_and_orthonormal(num_nodes):
    torch.manual_seed(3)
    first = laplacian_pe(num_nodes, "ring", 8)
    torch.manual_seed(3)
    again = laplacian_pe(num_nodes, "ring", 8)
    assert torch.equal(first, again)
    torch.testing.assert_close(first.T @ first, torch.eye(8), atol=1e-4, rtol=0)
    assert torch.equal(laplacian_pe(5, "chain", 8)[:, 3:], torch.zeros(5, 5))  # too small for 8 vectors
