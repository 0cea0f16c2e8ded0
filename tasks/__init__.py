"""Built-in task plugins, registered through the ``seqbench`` entry point (package ``seqbench_tasks``)."""

from seqbench.hookspecs import hookimpl
from seqbench.registry import TaskSpec


@hookimpl
def seqbench_register_tasks(registry):
    registry.add(TaskSpec(
        "mqar", build="seqbench_tasks.mqar:MQARData", config="seqbench_tasks.mqar:MQARConfig", version=1, causal=True,
        description="Multi-query associative recall (zoology): recall each queried key's value",
        presets={
            "smoke": {"task": {"seq_len": 32, "num_kv_pairs": 4, "num_train": 256, "num_val": 64, "num_test": 64},
                      "train": {"max_steps": 8, "batch_size": 32, "eval_every": 4, "eval_batches": 1}},
            "default": {"task": {}, "train": {"max_steps": 1500, "batch_size": 64, "eval_every": 100}},
            "paper": {"task": {"vocab_size": 8192, "seq_len": 512, "num_kv_pairs": 64, "num_train": 100_000,
                               "num_test": 3_000}, "train": {"max_steps": 20_000, "batch_size": 64, "lr": 1e-3}},
        }))
