"""TGN: causality, gate limits, hard vs soft gating, chunked compute skipping, gradients, lambda schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqbench.api import TaskInfo
from seqbench_plugins.tgn import TGNConfig, build

VARIANTS = ("parallel", "serial", "chunked", "chunked-mamba")  # chunked runs on a GRU and on a Mamba base
INFO = TaskInfo(name="toy", vocab_size=12, seq_len=24, num_classes=12, target="token", causal=True)


def tiny(variant: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    variant, _, base = variant.partition("-")
    fields = dict(variant=variant, d_model=16, n_layers=2, n_heads=2, chunk_size=4, base=base or "gru")
    fields.update(overrides)
    return build(TGNConfig(**fields), INFO).eval()


def tokens(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, INFO.vocab_size, (batch, INFO.seq_len), generator=torch.Generator().manual_seed(seed))


def saturate(model: torch.nn.Module) -> None:
    """Scale gate weights so every g is 0 or 1 to float precision, with a mix of both."""
    with torch.no_grad():
        for block in model.blocks:
            block.gate.weight.mul_(1e6)
            if block.gate_start is not None:
                block.gate_start.normal_()


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_causal(variant, mode):
    model = tiny(variant)
    model.set_gate_mode(mode)
    x = tokens()
    for t in (0, 5, 11, 18):
        changed = x.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + torch.arange(INFO.seq_len - t - 1)) % INFO.vocab_size
        with torch.no_grad():
            a, b = model(x).logits, model(changed).logits
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_gate_limits_select_one_channel(variant):
    model = tiny(variant)
    block = model.blocks[0]
    x = torch.randn(2, INFO.seq_len, 16)
    with torch.no_grad():
        z = block.norm1(x)
        h_rnn = block.inertial(z)
        h_attn = block.attn(h_rnn if variant == "serial" else z)
        for forced, delta in ((0.0, h_rnn), (1.0, h_attn)):
            block.gate_override = forced
            expected = x + delta
            expected = expected + block.ffn(block.norm2(expected))
            for hard in (False, True):
                out, g = block(x, hard)
                assert torch.all(g == forced)
                torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hard_equals_soft_where_gates_saturated(variant):
    model = tiny(variant)
    saturate(model)
    x = tokens()
    with torch.no_grad():
        soft = model(x)
        model.set_gate_mode("hard")
        hard = model(x)
    rate = float((soft.gates > 0.5).float().mean())
    assert 0.1 < rate < 0.9, f"want a mix of open and closed gates, got rate {rate}"
    assert torch.all((soft.gates < 1e-6) | (soft.gates > 1 - 1e-6))
    torch.testing.assert_close(hard.logits, soft.logits, rtol=1e-4, atol=1e-4)
    spent = float(hard.extras["attn_flop_fraction"])
    assert 0 < spent < 1 and float(soft.extras["attn_flop_fraction"]) == 1.0


@pytest.mark.parametrize("gated_chunks", [0, 1, 3, 6])
def test_chunked_hard_work_scales_with_gated_chunks(gated_chunks):
    model = tiny("chunked", n_layers=1)
    n_chunks = INFO.seq_len // 4
    model.force_gate_rate(gated_chunks / n_chunks)
    model.set_gate_mode("hard")
    batch = 2
    with torch.no_grad():
        out = model(tokens(batch))
    attn = model.blocks[0].attn
    chosen = model.blocks[0].chunk_override
    assert int(chosen.sum()) == gated_chunks
    assert attn.query_rows == batch * gated_chunks * 4
    # chunk c's 4 queries sit at positions 4c .. 4c + 3 and need p + 1 keys each: 16c + 10 scores
    assert attn.pairs == batch * sum(16 * c + 10 for c in chosen.nonzero().squeeze(1).tolist())
    assert attn.pairs <= attn.full_pairs
    assert float(out.extras["attn_flop_fraction"]) == pytest.approx(attn.pairs / attn.full_pairs, rel=1e-6)


def test_chunked_learned_gate_skips_ungated_chunks():
    model = tiny("chunked", n_layers=1)
    saturate(model)
    model.set_gate_mode("hard")
    with torch.no_grad():
        out = model(tokens(2))
    gated = int((out.gates > 0.5).sum())
    assert 0 < gated < out.gates.numel()
    assert model.blocks[0].attn.query_rows == gated * 4


def test_chunk_gate_reads_only_earlier_tokens():
    model = tiny("chunked")
    x = tokens()
    changed = x.clone()
    changed[:, 4:8] = (changed[:, 4:8] + 1) % INFO.vocab_size  # all of chunk 1
    with torch.no_grad():
        a, b = model(x).gates, model(changed).gates
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2], rtol=0, atol=0)  # chunks 0, 1 decided before it
    assert not torch.allclose(a[:, :, 2:], b[:, :, 2:])


@pytest.mark.parametrize("gate", ["linear", "mlp"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_the_gate(variant, gate):
    model = tiny(variant, gate=gate).train()
    x = tokens()
    out = model(x)
    task = F.cross_entropy(out.logits.reshape(-1, INFO.num_classes), x.roll(-1, 1).reshape(-1))
    (task + 0.02 * out.gates.mean()).backward()
    for block in model.blocks:
        grads = [p.grad for p in block.gate.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_gate_penalty_alone_pushes_gates_down():
    model = tiny("parallel").train()
    x = tokens()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = model(x).gates.mean().item()
    for _ in range(5):
        optimizer.zero_grad()
        model(x).gates.mean().backward()
        optimizer.step()
    assert model(x).gates.mean().item() < before - 0.05


def test_lambda_fixed():
    model = tiny("parallel", lambda_mode="fixed", lambda_max=0.03)
    assert [model.gate_lambda(s, torch.tensor(4.0 - s)) for s in range(3)] == [0.03, 0.03, 0.03]


def test_lambda_adaptive_rises_as_loss_falls():
    model = tiny("parallel", lambda_mode="adaptive", lambda_max=0.02, lambda_ema=0.9)
    flat = [model.gate_lambda(s, torch.tensor(4.0)) for s in range(50)]
    assert flat == [0.0] * 50  # no progress on the task: no penalty (error-driven phase)
    losses = [4.0 * math.exp(-s / 40) for s in range(400)]
    lambdas = [model.gate_lambda(50 + s, torch.tensor(loss)) for s, loss in enumerate(losses)]
    assert all(b >= a for a, b in zip(lambdas, lambdas[1:]))
    assert lambdas[10] < 0.1 * 0.02 and 0.95 * 0.02 < lambdas[-1] <= 0.02  # rises towards lambda_max
    up = [model.gate_lambda(450 + s, torch.tensor(4.0)) for s in range(200)]
    assert up[-1] < 0.01 * 0.02  # the loss climbing back releases the penalty


def test_hard_training_starts_once_the_loss_has_fallen_far_enough():
    model = tiny("parallel", hard_train_from=0.5, lambda_ema=0.9)
    for s in range(30):
        model.gate_lambda(s, torch.tensor(4.0))
    assert not any(block.hard_mix_training for block in model.blocks)
    for s in range(30):
        model.gate_lambda(30 + s, torch.tensor(1.0))  # the EMA falls below half the first loss
    assert all(block.hard_mix_training for block in model.blocks)
    never = tiny("parallel")  # default 1.0: the paper's soft training throughout
    for s in range(30):
        never.gate_lambda(s, torch.tensor(4.0 if s == 0 else 1e-6))
    assert not any(block.hard_mix_training for block in never.blocks)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hard_training_mix_is_hard_mode(variant):
    model = tiny(variant)
    x = tokens()
    with torch.no_grad():
        for block in model.blocks:
            block.gate.weight.mul_(20)  # gates spread away from 0.5: some open, some closed
            if block.gate_start is not None:
                block.gate_start.normal_()
        model.set_gate_mode("hard")
        hard = model(x).logits
        model.set_gate_mode("soft")
    model.train()
    for block in model.blocks:
        block.hard_mix_training = True
    out = model(x)
    assert 0 < float((out.gates > 0.5).float().mean()) < 1
    torch.testing.assert_close(out.logits, hard, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hard_training_sends_gradient_to_closed_gates(variant):
    """Every gate closed: hard mode's output ignores attention, yet the straight-through step still
    tells the gates whether opening would lower the loss (without it their gradient is exactly 0)."""
    model = tiny(variant).train()
    with torch.no_grad():
        for block in model.blocks:
            block.gate.bias.fill_(-6.0)
            block.gate.weight.zero_()
            if block.gate_start is not None:
                block.gate_start.zero_()
            block.hard_mix_training = True
    x = tokens()
    out = model(x)
    assert float(out.gates.detach().max()) < 0.5
    F.cross_entropy(out.logits.reshape(-1, INFO.num_classes), x.reshape(-1)).backward()
    for block in model.blocks:
        assert float(block.gate.bias.grad.abs()) > 0


def test_force_gate_rate_picks_exact_count():
    model = tiny("chunked")
    model.set_gate_mode("hard")
    for p, expected in ((0.15, 1), (0.5, 3), (1.0, 6), (0.0, 0)):
        model.force_gate_rate(p)
        with torch.no_grad():
            model(tokens(1))
        assert int(model.blocks[0].chunk_override.sum()) == expected
    model.force_gate_rate(None)
    with torch.no_grad():
        model(tokens(1))
    assert model.blocks[0].chunk_override is None
    with pytest.raises(ValueError):
        tiny("parallel").force_gate_rate(0.1)


def test_effective_rank():
    from seqbench.train.probes import effective_rank

    assert effective_rank(torch.eye(8)) == pytest.approx(8.0, rel=1e-5)
    rank_one = torch.randn(20, 1) @ torch.randn(1, 8)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)


def at_positions(attn, x: torch.Tensor, positions: list[list[torch.Tensor]]) -> torch.Tensor:
    """``rows_attention`` scattered into a (B, T, D) tensor that is zero at the positions it did not return."""
    out = x.new_zeros(x.shape)
    for b, found in enumerate(attn.rows_attention(x, positions)):
        if found is not None:
            out[b, found[0]] = found[1]
    return out


@pytest.mark.parametrize("chunks", [[(0, 4)], [(4, 8), (8, 12), (20, 23)], [(0, 4), (12, 16), (16, 19)]])
def test_chunk_attention_equals_full_causal_attention_at_those_rows(chunks):
    """Hard mode's chunk path (flash calls per key segment, merged by log-sum-exp) is exact attention:
    adjacent chunks, a chunk at 0 and a ragged last chunk give full causal attention's rows."""
    from seqbench_plugins.tgn_attention import SubsetCausalAttention

    torch.manual_seed(0)
    attn = SubsetCausalAttention(16, 2).eval()
    x = torch.randn(2, 23, 16)
    groups = [torch.arange(lo, hi) for lo, hi in chunks]
    with torch.no_grad():
        full = attn(x)
        attn.reset_counters()
        subset = at_positions(attn, x, [groups, groups[:1]])
    rows = torch.cat(groups)
    torch.testing.assert_close(subset[0, rows], full[0, rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(subset[1, groups[0]], full[1, groups[0]], rtol=1e-5, atol=1e-5)
    others = torch.ones(23, dtype=torch.bool)
    others[rows] = False
    assert torch.all(subset[0, others] == 0)
    # a query at position p needs the p + 1 keys up to it
    assert attn.pairs == sum(p + 1 for lo, hi in chunks for p in range(lo, hi)) + sum(p + 1 for p in range(*chunks[0]))


def test_scattered_token_attention_equals_full_causal_attention_at_those_rows():
    from seqbench_plugins.tgn_attention import SubsetCausalAttention

    torch.manual_seed(0)
    attn = SubsetCausalAttention(16, 2).eval()
    x = torch.randn(1, 23, 16)
    rows = torch.tensor([0, 3, 4, 9, 22])
    with torch.no_grad():
        torch.testing.assert_close(at_positions(attn, x, [[rows]])[0, rows], attn(x)[0, rows], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["parallel", "chunked"])
def test_blocked_ffn_without_autograd_gives_the_same_outputs(variant, monkeypatch):
    """Inference runs the FFN over blocks of positions (tgn.FFN_BLOCK); it is position-wise, so the outputs
    are those of the whole-sequence FFN, in soft and hard mode."""
    import seqbench_plugins.tgn as tgn_module

    model = tiny(variant).eval()
    x = tokens()
    for mode in ("soft", "hard"):
        model.set_gate_mode(mode)
        with torch.no_grad():
            expected = model(x).logits  # T below FFN_BLOCK: the whole-sequence FFN
        monkeypatch.setattr(tgn_module, "FFN_BLOCK", 5)  # blocks that do not divide T
        with torch.no_grad():
            blocked = model(x).logits
        monkeypatch.setattr(tgn_module, "FFN_BLOCK", 2048)
        torch.testing.assert_close(blocked, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hard_mode_runs_under_bf16_autocast_and_stays_close_to_fp32(variant):
    """bf16-mixed on the CPU (--precision bf16-mixed): the hard path's chunk attention merges float32
    log-sum-exps with bf16 outputs."""
    model = tiny(variant)
    model.set_gate_mode("hard")
    with torch.no_grad():
        for block in model.blocks:  # open every gate, so the gathered-attention path runs
            block.gate_override = 0.9
        expected = model(tokens()).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(tokens()).logits
    assert torch.isfinite(got).all()
    assert float((got.float() - expected).abs().max()) < 0.1 * float(expected.abs().max())


def test_attention_work_counts_each_gated_query_s_causal_prefix_never_more_than_full():
    """Scattered gated tokens: the work is the p + 1 keys each query at p needs, so every gate open is
    exactly full causal attention (the masked kernel's padded block once read 1.89 of it on MQAR)."""
    from seqbench_plugins.tgn_attention import SubsetCausalAttention, causal_pairs

    attn = SubsetCausalAttention(16, 2).eval()
    x = torch.randn(1, 23, 16)
    rows = torch.tensor([0, 3, 4, 9, 22])
    with torch.no_grad():
        at_positions(attn, x, [[rows]])
        assert attn.pairs == 1 + 4 + 5 + 10 + 23
        attn.reset_counters()
        at_positions(attn, x, [[torch.arange(23)]])
    assert attn.pairs == attn.full_pairs == causal_pairs(23)
