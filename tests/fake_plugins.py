"""Small fake model plugins for the bench, sweep and report tests (registered via extra_plugins, or
for a CLI in a subprocess through the entry point ``fake_plugins:fake_models``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqbench.api import ModelOutput, TaskInfo
from seqbench.hookspecs import hookimpl
from seqbench.registry import ModelSpec


@dataclass(frozen=True)
class FakeConfig:
    d_model: int = 8
    variant: str = "chunked"
    fail_above: int = 0  # seq_len above which forward raises (0: never)
    failure: str = "memory"  # memory (-> oom) | runtime (-> failed)
    nan_on_rank: int = -1  # the distributed rank whose training forward returns NaN logits after its first (-1: none)


class GatedFake(nn.Module):
    """Embedding + linear head with a per-token gate; ``force_gate_rate(p)`` gates the first p of tokens."""

    def __init__(self, c: FakeConfig, info: TaskInfo):
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(info.vocab_size, c.d_model)
        self.gate = nn.Linear(c.d_model, 1)
        self.head = nn.Linear(c.d_model, info.num_classes)
        self.forced: float | None = None
        self.mode = "soft"

    def force_gate_rate(self, p: float | None) -> None:
        self.forced = p

    def set_gate_mode(self, mode: str) -> None:
        self.mode = mode

    def forward(self, tokens: torch.Tensor) -> ModelOutput:
        B, T = tokens.shape
        if self.config.fail_above and T > self.config.fail_above:
            if self.config.failure == "memory":
                raise MemoryError("fake allocation failure")
            raise RuntimeError("fake model bug")
        x = self.embed(tokens)  # (B, T, D)
        gates = torch.sigmoid(self.gate(x)).squeeze(-1)  # (B, T)
        if self.forced is not None and self.mode == "hard":  # like the chunked TGN: forcing needs hard mode
            gates = (torch.arange(T) < round(self.forced * T)).float().expand(B, T)
        logits = self.head(x)
        # from the second training step on: a NaN first output is refused as a broken model, not a divergence
        self.training_calls = getattr(self, "training_calls", 0) + int(self.training)
        if (self.training_calls > 1 and torch.distributed.is_initialized()
                and torch.distributed.get_rank() == self.config.nan_on_rank):
            logits = logits * float("nan")
        return ModelOutput(logits=logits, gates=gates)


class PlainFake(GatedFake):
    """The same model without a way to force its gate rate (and returning bare logits)."""

    force_gate_rate = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens).logits


class TransposedFake(PlainFake):
    """Breaks the contract: logits (T, B, C) instead of (B, T, C)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens).transpose(0, 1)  # (T, B, C)


class NonFiniteFake(PlainFake):
    """Breaks the contract: NaN logits from the first batch on."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens) * float("nan")


def build_gated(config: FakeConfig, info: TaskInfo) -> GatedFake:
    return GatedFake(config, info)


def build_plain(config: FakeConfig, info: TaskInfo) -> PlainFake:
    return PlainFake(config, info)


class FakeModels:
    @hookimpl
    def seqbench_register_models(self, registry):
        registry.add(ModelSpec("fake_gated", build=build_gated, config=FakeConfig, description="test double",
                               variants=("chunked", "parallel")))
        registry.add(ModelSpec("fake_plain", build=build_plain, config=FakeConfig, description="test double",
                               variants=("chunked",)))


class ContractBreakers:
    """Models whose plugin breaks seqbench's contract, each in one way."""

    @hookimpl
    def seqbench_register_models(self, registry):
        registry.add(ModelSpec("fake_transposed", build=TransposedFake, config=FakeConfig, description="(T, B, C)"))
        registry.add(ModelSpec("fake_nonfinite", build=NonFiniteFake, config=FakeConfig, description="NaN logits"))
        registry.add(ModelSpec("fake_unimportable", build="seqbench_no_such_module_xyz.models:build",
                               config=FakeConfig, description="its build target does not import"))
fake_models = FakeModels()  # the instance an entry point names


class NamedModels:
    """A plugin registering placeholder specs under the given names (for registry and broken-plugin tests)."""

    def __init__(self, *names: str):
        self.names = names

    @hookimpl
    def seqbench_register_models(self, registry):
        for name in self.names:
            registry.add(ModelSpec(name, build="x:build", config="x:Config", description=name))
