"""Every registered model on every registered task, at the smoke preset: the same checks for all."""

from __future__ import annotations

import pytest
import torch

from seqbench.api import ModelOutput
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import build_registries
from seqbench.train.runner import build_data_and_model

_REGISTRIES = build_registries()
PAIRS = [(m.name, v, t.name) for m in _REGISTRIES.models for v in m.variants for t in _REGISTRIES.tasks
         if m.inputs & t.views]


def _setup(model, variant, task, overrides):
    config = resolve_run_config(_REGISTRIES, model, task, variant=variant, preset="smoke", seed=0,
                                overrides=overrides(task))
    data, info, module = build_data_and_model(_REGISTRIES, config)
    tokens, targets = next(iter(data.train_dataloader()))
    return info, module, tokens[:4], targets[:4]


def _logits(out):
    return out.logits if isinstance(out, ModelOutput) else out


@pytest.mark.parametrize("model, variant, task", PAIRS, ids=[f"{m}-{v}-{t}" for m, v, t in PAIRS])
def test_forward_backward_no_nan(model, variant, task, smoke_overrides):
    info, module, tokens, targets = _setup(model, variant, task, smoke_overrides)
    out = module(tokens)
    logits = _logits(out)
    expected = (tokens.shape[0], info.seq_len, info.num_classes) if info.target == "token" else (
        tokens.shape[0], info.num_classes)
    assert tuple(logits.shape) == expected
    assert torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, info.num_classes), targets.reshape(-1),
                                             ignore_index=info.ignore_index)
    if isinstance(out, ModelOutput) and out.gates is not None:
        loss = loss + out.gates.mean()
    loss.backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


CAUSAL_PAIRS = [p for p in PAIRS if _REGISTRIES.tasks.get(p[2]).causal]


@pytest.mark.parametrize("model, variant, task", CAUSAL_PAIRS, ids=[f"{m}-{v}-{t}" for m, v, t in CAUSAL_PAIRS])
def test_causality(model, variant, task, smoke_overrides):
    """Changing token t+1 leaves the outputs at positions <= t unchanged."""
    info, module, tokens, _ = _setup(model, variant, task, smoke_overrides)
    assert info.causal and info.target == "token"
    module.eval()
    with torch.no_grad():
        before = _logits(module(tokens))
        for t in (0, info.seq_len // 2, info.seq_len - 2):
            changed = tokens.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1) % info.vocab_size
            after = _logits(module(changed))
            torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])  # the change is seen later
