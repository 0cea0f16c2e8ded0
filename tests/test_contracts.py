"""The declared model contract: which built-in and test models offer which optional capability, as the
harness sees them through seqbench.capabilities."""

from __future__ import annotations

import pytest
from fake_plugins import FakeConfig, GatedFake, PlainFake
from torch import nn

from seqbench import capabilities
from seqbench.api import (
    ForcibleGates,
    GateModes,
    GateSchedule,
    GateThreshold,
    KernelReport,
    LayerProbes,
    ModelBuilder,
    SequenceModel,
    TaskInfo,
)
from seqbench.registry import load_target

INFO = TaskInfo(name="toy", vocab_size=12, seq_len=16, num_classes=12, target="token", causal=True)
CAPABILITIES = (GateSchedule, GateThreshold, GateModes, ForcibleGates, LayerProbes, KernelReport)


def _build(registries, name: str, variant: str | None = None) -> nn.Module:
    from seqbench.configure.resolve import resolve_model_config

    spec = registries.models.get(name)
    config = resolve_model_config(spec, "smoke", variant or spec.variants[0], {})
    builder = load_target(spec.build)
    assert isinstance(builder, ModelBuilder)
    return builder(config, INFO)


@pytest.mark.parametrize("name, variant, expected", [
    ("tgn", "chunked", {GateSchedule, GateThreshold, GateModes, ForcibleGates, LayerProbes}),
    ("transformer", None, set()),
    ("gru", None, set()),
])
def test_builtin_models_declare_what_they_offer(registries, name, variant, expected):
    module = _build(registries, name, variant)
    assert isinstance(module, SequenceModel)
    assert {cap for cap in CAPABILITIES if isinstance(module, cap)} == expected


def test_capabilities_are_asked_in_one_place(registries):
    tgn = _build(registries, "tgn", "chunked")
    assert capabilities.gate_schedule(tgn) is tgn and capabilities.gate_modes(tgn) is tgn
    assert capabilities.gate_threshold(tgn) == tgn.c.tau
    assert capabilities.forcible_gates(tgn) == [tgn] and capabilities.layer_probes(tgn) is tgn
    transformer = _build(registries, "transformer")
    assert capabilities.gate_schedule(transformer) is None and capabilities.layer_probes(transformer) is None
    assert capabilities.gate_threshold(transformer) == capabilities.DEFAULT_GATE_THRESHOLD
    assert capabilities.kernels_used(transformer) == "torch"


def test_a_member_set_to_none_opts_out():
    gated, plain = GatedFake(FakeConfig(), INFO), PlainFake(FakeConfig(), INFO)
    assert capabilities.forcible_gates(gated) == [gated] and capabilities.forcible_gates(plain) == []
    assert capabilities.gate_modes(plain) is plain  # the rest of its parent's capabilities remain


def test_kernel_paths_are_collected_from_submodules():
    class Reporting(nn.Module):
        def __init__(self, path: str):
            super().__init__()
            self.kernel_path = path

    model = nn.Sequential(Reporting("x:fast"), Reporting(""), nn.Sequential(Reporting("a:slow")))
    assert isinstance(model[0], KernelReport)
    assert capabilities.kernels_used(model) == "a:slow,x:fast"  # a path not run yet ("") is left out
