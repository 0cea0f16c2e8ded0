"""Registration only: no torch import here, so `seqbench list` stays fast."""

from seqbench.api import ModelSpec
from seqbench.hookspecs import hookimpl


@hookimpl
def seqbench_register_models(registry):
    registry.add(ModelSpec(
        "example_lstm", build="seqbench_example.lstm:build", config="seqbench_example.lstm:LSTMConfig",
        description="Example plugin: a stacked LSTM", presets={"smoke": {"d_model": 16, "n_layers": 1}}))
