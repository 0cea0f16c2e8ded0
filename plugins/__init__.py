"""Built-in model plugins, registered through the ``seqbench`` entry point like any third party's.

Installed as the package ``seqbench_plugins`` (see pyproject's package-dir). This module stays
light: specs point at their modules lazily, so listing models imports no torch.
"""

from seqbench.api import ModelSpec
from seqbench.hookspecs import hookimpl

# cpu: the default width and depth (d_model 64, 2 layers), the largest a 2-core CPU trains 3 seeds x 3
# learning rates of in the reproduction's budget (docs/reproduction-plan.md)
_SIZES = {"smoke": {"d_model": 16, "n_layers": 1}, "default": {}, "cpu": {},
          "paper": {"d_model": 128, "n_layers": 2}}

# cpu: rotary positions. With learned ones a 2-layer Transformer had not formed an induction circuit for
# associative recall after 1,000 steps; with RoPE it had (docs/reproduction-plan.md), and it is today's usual choice.
_TRANSFORMER_SIZES = {**_SIZES, "cpu": {"positions": "rope"}}

# TGN's default is sized so `seqbench run --model tgn --task mqar` learns MQAR on a 2-core CPU (the mqar
# default preset aims at <= 60 s; benchmarks/bench_main_job.py measures it).
_TGN_SIZES = {"smoke": {"d_model": 16, "n_layers": 1, "n_heads": 2, "chunk_size": 8}, "default": {}, "cpu": {},
              "paper": {"d_model": 128, "n_layers": 2}}


@hookimpl
def seqbench_register_models(registry):
    registry.add(ModelSpec(
        "transformer", build="seqbench_plugins.transformer:build",
        config="seqbench_plugins.transformer:TransformerConfig",
        description="Pre-LN causal Transformer decoder (SDPA attention)", presets=_TRANSFORMER_SIZES,
        width_multiple="n_heads", second_sizes={"mlp_ratio": (1, 8), "n_heads": (1, 16)},
        state_size="seqbench_plugins.transformer:state_size"))
    registry.add(ModelSpec(
        "gru", build="seqbench_plugins.gru:build", config="seqbench_plugins.gru:GRUConfig",
        description="Stacked GRU: the pure-RNN baseline", presets=_SIZES,
        state_size="seqbench_plugins.gru:state_size"))
    registry.add(ModelSpec(
        "mamba", build="seqbench_plugins.mamba:build", config="seqbench_plugins.mamba:MambaConfig",
        description="Mamba-1 selective SSM (mamba-ssm kernels on CUDA, chunked PyTorch scan elsewhere)",
        presets=_SIZES, second_sizes={"expand": (1, 4)}, state_size="seqbench_plugins.mamba:state_size"))
    registry.add(ModelSpec(
        "tgn", build="seqbench_plugins.tgn:build", config="seqbench_plugins.tgn:TGNConfig",
        description="Thermodynamic Gated Network: GRU/Mamba + causal attention mixed by a sparse learned gate",
        variants=("parallel", "serial", "chunked"), presets=_TGN_SIZES,
        width_multiple="n_heads", second_sizes={"mlp_ratio": (1, 8), "n_heads": (1, 16), "expand": (1, 4)},
        state_size="seqbench_plugins.tgn:state_size"))
    # Graph models take the graph view and read any token task as a chain graph over its positions.
    registry.add(ModelSpec(
        "gcn", build="seqbench_plugins.gcn:build", config="seqbench_plugins.gcn:GCNConfig",
        description="GCN (torch_geometric GCNConv): k layers see exactly k hops, no positions",
        inputs=frozenset({"graph", "tokens"}),
        presets={"smoke": {"d_model": 16}, "default": {}, "cpu": {}, "paper": {"d_model": 128, "n_layers": 3}}))
    registry.add(ModelSpec(
        "graphgps", build="seqbench_plugins.graphgps:build", config="seqbench_plugins.graphgps:GraphGPSConfig",
        description="GraphGPS (torch_geometric GPSConv): local GIN + global attention, Laplacian PE",
        inputs=frozenset({"graph", "tokens"}),
        presets={"smoke": {"d_model": 16, "n_heads": 2}, "default": {}, "cpu": {},
                 "paper": {"d_model": 128, "n_layers": 1}},
        width_multiple="n_heads", second_sizes={"n_heads": (1, 16)}))
