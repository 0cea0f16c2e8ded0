"""Logits at scored positions only (seqbench.api.PositionReadout), and the loss an adaptive lambda follows."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.api import IGNORE_INDEX, TaskInfo
from seqbench.capabilities import position_readout
from seqbench.configure.config import TrainConfig
from seqbench.configure.resolve import resolve_model_config
from seqbench.registry import build_registries, load_spec_target
from seqbench.train.lit import SeqbenchModule, as_output

INFO = TaskInfo(vocab_size=64, seq_len=24, num_classes=64, target="token", causal=True)
TOKEN_MODELS = [("transformer", "default"), ("gru", "default"), ("mamba", "default"), ("tgn", "parallel"),
                ("tgn", "serial"), ("tgn", "chunked")]


def build(model: str, variant: str, info: TaskInfo = INFO) -> nn.Module:
    spec = build_registries().models.get(model)
    config = resolve_model_config(spec, "smoke", variant, {})
    torch.manual_seed(0)
    return load_spec_target(spec, "build")(config, info).eval()


def sparse_targets(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 64, (batch, INFO.seq_len), generator=generator)
    targets = torch.full((batch, INFO.seq_len), IGNORE_INDEX)
    for row, cols in enumerate(([3, 9, 20], [5], [0, 23])):
        targets[row, cols] = torch.randint(0, 64, (len(cols),), generator=generator)
    return tokens, targets


class WithoutReadout(nn.Module):
    """The same model seen without its read_out_at: the harness then picks from its full logits."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module

    def forward(self, tokens):
        return self.inner(tokens)


@pytest.mark.parametrize(("model", "variant"), TOKEN_MODELS)
def test_read_out_at_gives_the_full_logits_at_those_positions(model, variant):
    module = build(model, variant)
    assert position_readout(module) is not None
    tokens, targets = sparse_targets()
    positions = targets != IGNORE_INDEX
    with torch.no_grad():
        full = as_output(module(tokens)).logits  # (B, T, C)
        picked = as_output(module.read_out_at(tokens, positions)).logits  # (N, C)
    assert picked.shape == (int(positions.sum()), 64)
    torch.testing.assert_close(picked, full[positions], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("model", "variant"), [("transformer", "default"), ("tgn", "parallel")])
def test_the_training_loss_is_the_same_with_and_without_read_out_at(model, variant):
    tokens, targets = sparse_targets()
    fast = SeqbenchModule(build(model, variant), INFO, TrainConfig())
    plain = SeqbenchModule(WithoutReadout(build(model, variant)), INFO, TrainConfig())
    assert position_readout(plain.module) is None
    with torch.no_grad():
        a, b = fast.scored(tokens, targets), plain.scored(tokens, targets)
        torch.testing.assert_close(fast.task_loss(a.out.logits, a.targets), plain.task_loss(b.out.logits, b.targets))
        # and both equal the loss over every position with the unscored ones ignored
        full = as_output(plain.module(tokens)).logits
        expected = F.cross_entropy(full.reshape(-1, 64), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        torch.testing.assert_close(fast.task_loss(a.out.logits, a.targets), expected)


def test_the_output_head_runs_only_at_the_scored_positions():
    module = build("transformer", "default")
    rows = []
    module.readout.head.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    tokens, targets = sparse_targets()
    with torch.no_grad():
        SeqbenchModule(module, INFO, TrainConfig()).scored(tokens, targets)
    assert rows == [6]  # 3 + 1 + 2 scored targets, not 3 x 24 positions


def test_a_wrong_read_out_at_is_named_on_the_first_batch():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build("gru", "default")

        def forward(self, tokens):
            return self.inner(tokens)

        def read_out_at(self, tokens, positions):
            return self.inner(tokens)  # every position's logits: not what the contract asks

    tokens, targets = sparse_targets()
    with pytest.raises(Exception, match="read_out_at"):
        SeqbenchModule(Broken(), INFO, TrainConfig(), model_name="broken").scored(tokens, targets, "training")


def test_lambda_follows_the_loss_where_the_evaluation_scores():
    """Associative recall (eval_scores="last"): the training targets cover every next token, the
    evaluation only each row's answer, and the adaptive lambda reads the answer's loss."""
    info = dataclasses.replace(INFO, eval_scores="last")
    lit = SeqbenchModule(build("tgn", "serial", info), info, TrainConfig())
    tokens = torch.randint(0, 64, (4, INFO.seq_len), generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 64, (4, INFO.seq_len), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scored = lit.scored(tokens, targets)
        loss = lit.task_loss(scored.out.logits, scored.targets)
        signal = lit.lambda_signal(scored, loss)
        full = as_output(lit.module(tokens)).logits
    torch.testing.assert_close(signal, F.cross_entropy(full[:, -1], targets[:, -1]))
    assert not torch.isclose(signal, loss)
    every = SeqbenchModule(lit.module, INFO, TrainConfig())  # eval_scores="all": the training loss itself
    with torch.no_grad():
        assert every.lambda_signal(every.scored(tokens, targets), loss) is loss
