"""Baselines configured as their authors run them (issue 21): the options the published reference
cells need, and state sizes checked against counts by hand (zoology #34-#37 is what a wrong formula costs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqbench.analyse.report import select_runs
from seqbench.api import TaskInfo
from seqbench.cli import main
from seqbench.configure.budget import state_size
from seqbench.configure.resolve import resolve_model_config, resolve_run_config
from seqbench.errors import UserError
from seqbench.registry import build_registries
from seqbench.results import read_cells
from seqbench_plugins.graph_common import laplacian_pe
from seqbench_plugins.graphgps import GraphGPSConfig
from seqbench_plugins.graphgps import build as build_graphgps
from seqbench_plugins.gru import GRUConfig
from seqbench_plugins.gru import build as build_gru
from seqbench_plugins.transformer import TransformerConfig
from seqbench_plugins.transformer import build as build_transformer

TOKENS = TaskInfo(vocab_size=32, seq_len=128, num_classes=32, target="token")
RING = TaskInfo(vocab_size=2, seq_len=100, num_classes=51, target="sequence", topology="ring")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_a_transformer_without_mlp_has_attention_blocks_only():
    """zoology's attention baseline (Figure 2: no MLP): mlp_ratio 0 drops the FFN and its norm."""
    with_mlp = build_transformer(TransformerConfig(d_model=64, n_layers=2, n_heads=1), TOKENS)
    without = build_transformer(TransformerConfig(d_model=64, n_layers=2, n_heads=1, mlp_ratio=0), TOKENS)
    assert all(block.ffn is None and block.norm2 is None for block in without.blocks)
    # per layer the FFN is 64*256+256 + 256*64+64 = 33,088 and its LayerNorm 128: by hand, 33,216
    assert n_params(with_mlp) - n_params(without) == 2 * 33_216
    logits = without(torch.randint(0, 32, (3, 128)))
    assert logits.shape == (3, 128, 32) and torch.isfinite(logits).all()


def test_a_negative_mlp_ratio_is_refused():
    with pytest.raises(Exception, match="mlp_ratio"):
        TransformerConfig(mlp_ratio=-1)


def test_graphgps_concatenates_a_normalised_encoding_into_channels_of_its_own():
    torch.manual_seed(0)
    module = build_graphgps(GraphGPSConfig(d_model=64, n_heads=4, pe_dim=8, pe_channels=8), RING).eval()
    assert module.embed.embedding_dim == 56  # the tokens keep 64 - 8 channels
    encoded = module.encoded_positions(2, 100, torch.device("cpu"))  # (B * T, pe_channels)
    assert encoded.shape == (200, 8)
    # normalised: the raw eigenvectors' rms is 1/sqrt(N) = 0.1; after the norm each column has unit variance
    raw = laplacian_pe(100, "ring", 8)
    assert raw.pow(2).mean().sqrt().item() == pytest.approx(0.1, rel=1e-3)
    module.train()
    with torch.no_grad():
        normalised = module.pe_norm(raw.repeat(2, 1))
    torch.testing.assert_close(normalised.var(dim=0, unbiased=False), torch.ones(8), atol=2e-3, rtol=0)


def test_graphgps_flips_eigenvector_signs_in_training_only():
    module = build_graphgps(GraphGPSConfig(d_model=32, n_heads=4), RING)
    device = torch.device("cpu")
    module.eval()
    assert torch.equal(module.encoded_positions(1, 100, device), module.encoded_positions(1, 100, device))
    module.train()
    torch.manual_seed(0)
    flipped = [module.encoded_positions(1, 100, device) for _ in range(8)]
    assert any(not torch.allclose(flipped[0], other) for other in flipped[1:])
    # a flip changes the encoding's sign, not its size: |pe| per eigenvector is the same in every draw
    raw = module.positional_encoding(100, device)
    signs = torch.randint(0, 2, (8,)) * 2 - 1
    assert torch.equal((raw * signs).abs(), raw.abs())


def test_graphgps_refuses_an_encoding_that_leaves_the_tokens_no_channels():
    with pytest.raises(Exception, match="pe_channels"):
        GraphGPSConfig(d_model=8, n_heads=2, pe_channels=8)


# Hand counts at the cpu preset's sizes (d_model 64, 2 layers; Mamba and TGN's chunked Mamba base:
# d_state 16, expand 2, d_conv 4) at L = 128, written out so a wrong formula cannot check itself.
HAND_COUNTS = {
    # keys and values of every position, every layer: 2 layers x 2 x 128 positions x 64 = 32,768
    ("transformer", None): 32_768,
    # one hidden vector per layer: 2 x 64
    ("gru", None): 128,
    # per layer the SSM state (expand*d = 128 channels x d_state 16 = 2,048) and the conv window's last
    # d_conv - 1 = 3 inputs of 128 channels (384): 2,432, times 2 layers
    ("mamba", None): 4_864,
    # per layer the GRU state (64) plus attention's keys and values (2 x 128 x 64 = 16,384): 16,448 x 2
    ("tgn", "parallel"): 32_896,
    ("tgn", "serial"): 32_896,
    # the chunked variant's Mamba base (2,432) plus the same KV cache (16,384): 18,816 x 2
    ("tgn", "chunked"): 37_632,
}


@pytest.mark.parametrize(("model", "variant"), sorted(HAND_COUNTS, key=str))
def test_state_size_matches_a_count_by_hand(model, variant):
    registries = build_registries()
    spec = registries.models.get(model)
    config = resolve_model_config(spec, "cpu", variant or "default", {})
    assert state_size(spec, config, TOKENS) == HAND_COUNTS[(model, variant)]


def test_state_sizes_of_the_recurrences_match_the_states_the_modules_carry():
    """The same counts read off the modules: nn.GRU's final hidden state, and the keys and values the
    Transformer's attention computes (2 of the qkv projection's 3 outputs) at every position."""
    gru = build_gru(GRUConfig(d_model=64, n_layers=2), TOKENS)
    _, final_hidden = gru.rnn(torch.zeros(1, 128, 64))  # (n_layers, B = 1, d)
    assert final_hidden.numel() == HAND_COUNTS[("gru", None)]

    transformer = build_transformer(TransformerConfig(d_model=64, n_layers=2), TOKENS)
    kv = []
    hooks = [block.attn.qkv.register_forward_hook(lambda _m, _i, out: kv.append(out.numel() * 2 // 3))
             for block in transformer.blocks]
    transformer(torch.zeros(1, 128, dtype=torch.long))
    for hook in hooks:
        hook.remove()
    assert sum(kv) == HAND_COUNTS[("transformer", None)]


def test_a_scoped_setting_applies_to_its_model_only():
    """``MODEL:SECTION.KEY=VALUE``: the ring's 1-layer Transformer beside a 3-layer GCN in one sweep."""
    registries = build_registries()
    sets = ["transformer:model.n_layers=1", "gcn:model.n_layers=4", "train.lr=3e-3"]
    transformer = resolve_run_config(registries, "transformer", "ring_distance", preset="smoke", overrides=sets)
    gcn = resolve_run_config(registries, "gcn", "ring_distance", preset="smoke", overrides=sets)
    graphgps = resolve_run_config(registries, "graphgps", "ring_distance", preset="smoke", overrides=sets)
    assert (transformer.model_config.n_layers, gcn.model_config.n_layers, graphgps.model_config.n_layers) == (1, 4, 1)
    assert transformer.train.lr == gcn.train.lr == graphgps.train.lr == 3e-3


def test_a_scope_that_names_no_model_is_refused_with_a_suggestion():
    with pytest.raises(UserError, match="'transfomer' is not a model. Did you mean transformer"):
        resolve_run_config(build_registries(), "gcn", "ring_distance", preset="smoke",
                           overrides=["transfomer:model.n_layers=1"])


def test_a_sweep_configures_each_model_by_its_scoped_settings(tmp_path, capsys):
    code = main(["sweep", "--models", "gcn,transformer", "--tasks", "ring_distance", "--preset", "smoke",
                 "--set", "transformer:model.n_layers=1", "--dry-run", "--results", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not (tmp_path / "r").exists()
    one_layer = resolve_run_config(build_registries(), "transformer", "ring_distance", preset="smoke",
                                   overrides=["model.n_layers=1"])
    two_layers = resolve_run_config(build_registries(), "transformer", "ring_distance", preset="smoke",
                                    overrides=["model.n_layers=2"])
    assert one_layer.config_hash() in out and two_layers.config_hash() not in out


def test_a_claim_reads_each_model_at_its_scoped_setting():
    """A ring claim's ``transformer:model.n_layers=1`` selects the 1-layer Transformer's rows and says
    nothing about GCN's (whose n_layers is 3)."""
    def row(model, n_layers):
        return {"status": "ok", "task": "ring_distance", "preset": "cpu", "model": model, "variant": "default",
                "config_json": json.dumps({"model_config": {"n_layers": n_layers}, "task_config": {}, "train": {}})}

    rows = [row("transformer", 1), row("transformer", 2), row("gcn", 3)]
    claim = {"measure": {"task": "ring_distance"},
             "presets": {"cpu": {"set": ["transformer:model.n_layers=1"]}}}
    transformer = select_runs(rows, claim, "cpu", {"model": "transformer"})
    gcn = select_runs(rows, claim, "cpu", {"model": "gcn"})
    assert [json.loads(r["config_json"])["model_config"]["n_layers"] for r in transformer] == [1]
    assert [r["model"] for r in gcn] == ["gcn"]


def test_a_scoped_setting_after_a_plain_one_overrides_it_in_the_run_and_in_the_claim():
    """``train.max_steps=2000`` then ``gru:train.max_steps=6000``: the GRU runs 6,000 steps and the others
    2,000, and a claim with both items reads each model's rows at its own cap (later items win, as in the
    run's config), not the GRU at 2,000."""
    registries = build_registries()
    sets = ["train.max_steps=2000", "gru:train.max_steps=6000"]
    gru = resolve_run_config(registries, "gru", "assoc_recall", preset="smoke", overrides=sets)
    tgn = resolve_run_config(registries, "tgn", "assoc_recall", preset="smoke", overrides=sets)
    assert (gru.train.max_steps, tgn.train.max_steps) == (6000, 2000)

    def row(model, max_steps):
        return {"status": "ok", "task": "assoc_recall", "preset": "cpu", "model": model, "variant": "default",
                "config_json": json.dumps({"model_config": {}, "task_config": {}, "train": {"max_steps": max_steps}})}

    rows = [row("gru", 2000), row("gru", 6000), row("tgn", 2000), row("tgn", 6000)]
    claim = {"measure": {"task": "assoc_recall"}, "presets": {"cpu": {"set": sets}}}
    read = {m: [json.loads(r["config_json"])["train"]["max_steps"]
                for r in select_runs(rows, claim, "cpu", {"model": m})] for m in ("gru", "tgn")}
    assert read == {"gru": [6000], "tgn": [2000]}


def test_a_setting_added_later_keeps_older_runs_config_hash_at_its_default():
    """MQAR's random_non_queries came after the evidence was recorded: at its default (the old behaviour)
    it stays out of a run's identity, so the committed rows' config hashes still name these runs."""
    registries = build_registries()
    default = resolve_run_config(registries, "tgn", "mqar", preset="cpu")
    zeroed = resolve_run_config(registries, "tgn", "mqar", preset="cpu", overrides=["task.random_non_queries=false"])
    assert "random_non_queries" not in json.loads(default.to_json())["task_config"]
    assert json.loads(zeroed.to_json())["task_config"]["random_non_queries"] is False
    assert default.config_hash() != zeroed.config_hash()
    # an evidence row of the cpu MQAR cell, recorded before the setting existed, has the same hash
    rows = [r for r in read_cells(Path(__file__).resolve().parent.parent / "evidence" / "cpu")[0]
            if r["model"] == "tgn" and r["task"] == "mqar" and r["seed"] == 0]
    assert rows
    assert any(r["config_hash"] == resolve_run_config(
        registries, "tgn", "mqar", variant=r["variant"], preset="cpu", seed=0,
        overrides=[f"train.lr={json.loads(r['config_json'])['train']['lr']}"]).config_hash() for r in rows)
