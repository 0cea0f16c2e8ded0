"""Built-in model plugins, registered through the ``seqbench`` entry point like any third party's.

Installed as the package ``seqbench_plugins`` (see pyproject's package-dir). This module stays
light: specs point at their modules lazily, so listing models imports no torch.
"""

from seqbench.hookspecs import hookimpl
from seqbench.registry import ModelSpec

_SIZES = {"smoke": {"d_model": 16, "n_layers": 1}, "default": {}, "paper": {"d_model": 128, "n_layers": 2}}


@hookimpl
def seqbench_register_models(registry):
    registry.add(ModelSpec(
        "transformer", build="seqbench_plugins.transformer:build",
        config="seqbench_plugins.transformer:TransformerConfig",
        description="Pre-LN causal Transformer decoder (SDPA attention)", presets=_SIZES))
    registry.add(ModelSpec(
        "gru", build="seqbench_plugins.gru:build", config="seqbench_plugins.gru:GRUConfig",
        description="Stacked GRU: the pure-RNN baseline", presets=_SIZES))
    registry.add(ModelSpec(
        "mamba", build="seqbench_plugins.mamba:build", config="seqbench_plugins.mamba:MambaConfig",
        description="Mamba-1 selective SSM (mamba-ssm kernels on CUDA, chunked PyTorch scan elsewhere)",
        presets=_SIZES))
