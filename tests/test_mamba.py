"""Mamba: the fast PyTorch scan against the sequential reference, the kernel policy, and a CLI run."""

from __future__ import annotations

import shutil

import pytest
import torch

import seqbench_plugins.mamba as mamba_module
from seqbench.api import TaskInfo
from seqbench.cli import main
from seqbench.errors import UserError
from seqbench.results import iter_rows, read_runs
from seqbench.train import kernels
from seqbench_plugins import cpu_scan, selective_scan
from seqbench_plugins.mamba import MambaBlock, MambaConfig, build
from seqbench_plugins.selective_scan import selective_scan_fast, selective_scan_ref

TOLERANCE = 1e-4  # max |fast - ref| / max |ref|, per output and per gradient, in fp32


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|; the absolute error when expected is all zeros."""
    actual, expected = actual.detach(), expected.detach()
    error, scale = float((actual - expected).abs().max()), float(expected.abs().max())
    return error / scale if scale > 0 else error


def scan_inputs(batch: int, dim: int, d_state: int, length: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Fresh random inputs (no seed: every run checks new ones), with mamba's argument layouts."""
    inputs = {
        "u": torch.randn(batch, dim, length), "delta": torch.randn(batch, dim, length),
        "A": -torch.exp(torch.randn(dim, d_state)),  # decay rates from ~0.05 to ~20, as training reaches
        "B": torch.randn(batch, d_state, length), "C": torch.randn(batch, d_state, length),
        "D": torch.randn(dim), "z": torch.randn(batch, dim, length), "delta_bias": torch.randn(dim),
    }
    return {name: t.to(device).requires_grad_() for name, t in inputs.items()}


def run_scan(scan, inputs: dict[str, torch.Tensor], grad_out: torch.Tensor):
    leaves = {name: t.detach().clone().requires_grad_() for name, t in inputs.items()}
    out = scan(**leaves, delta_softplus=True)
    out.backward(grad_out)
    return out.detach(), {name: t.grad for name, t in leaves.items()}


@pytest.mark.parametrize("chunk", [4, 16, selective_scan.CHUNK])
@pytest.mark.parametrize("length", [1, 37, 64])
def test_fast_scan_matches_sequential_reference(monkeypatch, chunk, length):
    monkeypatch.setattr(selective_scan, "CHUNK", chunk)  # 37 is no multiple of any chunk: a ragged last chunk
    inputs = scan_inputs(batch=2, dim=6, d_state=4, length=length)
    grad_out = torch.randn(2, 6, length)
    ref_out, ref_grads = run_scan(selective_scan_ref, inputs, grad_out)
    fast_out, fast_grads = run_scan(selective_scan_fast, inputs, grad_out)
    assert relative_error(fast_out, ref_out) < TOLERANCE
    for name in inputs:
        assert relative_error(fast_grads[name], ref_grads[name]) < TOLERANCE, name


def test_fast_scan_without_optional_terms_matches_reference():
    inputs = scan_inputs(batch=3, dim=5, d_state=3, length=20)
    core = {name: inputs[name] for name in ("u", "A", "B", "C")}
    # without softplus the step sizes are taken as given: they must be positive, as softplus makes them;
    # negative ones grow the state by exp(|delta * A|) per step and overflow to inf (then NaN) within L=20
    core["delta"] = inputs["delta"].detach().abs()
    fast = selective_scan_fast(**core)
    assert relative_error(fast, selective_scan_ref(**core)) < TOLERANCE


def test_reference_is_the_recurrence_written_out():
    """Two steps by hand, so the reference itself is checked against the definition."""
    u, delta = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.5, 0.25]]])  # (B=1, D=1, L=2)
    A, B, C = torch.tensor([[-1.0]]), torch.tensor([[[2.0, 3.0]]]), torch.tensor([[[1.0, -1.0]]])
    h0 = 0.5 * 2.0 * 1.0
    h1 = torch.exp(torch.tensor(-0.25)) * h0 + 0.25 * 3.0 * 2.0
    expected = torch.tensor([[[h0 * 1.0, float(h1) * -1.0]]])
    torch.testing.assert_close(selective_scan_ref(u, delta, A, B, C), expected)


# ------------------------------------------------------------------------------ the layer


def test_block_maps_shape_and_is_causal(monkeypatch):
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    block = MambaBlock(16, d_state=4)
    x = torch.randn(2, 12, 16)
    y = block(x)
    assert y.shape == x.shape
    changed = x.clone()
    changed[:, 7] += 1.0
    torch.testing.assert_close(block(changed)[:, :7], y[:, :7])
    assert not torch.allclose(block(changed)[:, 7], y[:, 7])
    assert block.kernel_path == ("mamba:cpu-kernel" if cpu_scan.available() else "mamba:torch-chunked")


def test_block_matches_mambapy_with_the_same_weights():
    """An independent Mamba-1 implementation (mambapy, pure PyTorch) with our weights gives our outputs."""
    mambapy = pytest.importorskip("mambapy.mamba")
    theirs = mambapy.MambaBlock(mambapy.MambaConfig(d_model=16, n_layers=1, d_state=8, expand_factor=2, d_conv=4))
    ours = MambaBlock(16, d_state=8, expand=2, d_conv=4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 45, 16, requires_grad=True)
    x_theirs = x.detach().clone().requires_grad_()
    y, y_theirs = ours(x), theirs(x_theirs)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    y_theirs.backward(grad_out)
    assert relative_error(y, y_theirs) < TOLERANCE
    assert relative_error(x.grad, x_theirs.grad) < TOLERANCE
    assert relative_error(ours.A_log.grad, theirs.A_log.grad) < TOLERANCE


def test_block_dt_rank_auto_and_initial_dynamics():
    block = MambaBlock(40, d_state=8, expand=2)
    assert block.dt_rank == 3  # ceil(40 / 16)
    assert block.A_log.shape == (80, 8)
    dt = torch.nn.functional.softplus(block.dt_proj.bias.detach())
    assert float(dt.min()) >= 1e-4 and float(dt.max()) <= 0.1 + 1e-6


# -------------------------------------------------------------------------- kernel policy


@pytest.mark.parametrize(("policy", "available", "on_cuda", "expected"), [
    ("auto", True, True, "fast"), ("auto", True, False, "ref"), ("auto", False, True, "ref"),
    ("ref", True, True, "ref"), ("fast", True, True, "fast"),
])
def test_policy_resolves(monkeypatch, policy, available, on_cuda, expected):
    monkeypatch.setenv(kernels.KERNELS_ENV, policy)
    assert kernels.resolve("mamba", available, on_cuda) == expected


def test_policy_defaults_to_auto(monkeypatch):
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    assert kernels.policy() == "auto"


def test_invalid_policy_is_a_user_error(monkeypatch):
    monkeypatch.setenv(kernels.KERNELS_ENV, "fastest")
    with pytest.raises(UserError, match="auto, ref, fast"):
        kernels.resolve("mamba", True, True)


def test_fast_without_kernel_names_the_install_command(monkeypatch):
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    with pytest.raises(UserError, match="pip install --no-build-isolation mamba-ssm causal-conv1d"):
        kernels.resolve("mamba", available=False, on_cuda=True)
    with pytest.raises(UserError, match="needs CUDA"):
        kernels.resolve("mamba", available=True, on_cuda=False)


def test_build_fails_early_when_fast_is_forced_without_kernel(monkeypatch):
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    monkeypatch.setattr(mamba_module, "selective_scan_fn", None)
    info = TaskInfo(name="toy", vocab_size=16, seq_len=8, num_classes=16, target="token", causal=True)
    with pytest.raises(UserError, match="mamba-ssm"):
        build(MambaConfig(d_model=8, n_layers=1), info)


def test_auto_keeps_the_torch_path_for_cpu_inputs_even_with_a_kernel(monkeypatch):
    def kernel_must_not_run(*args, **kwargs):
        raise AssertionError("the CUDA kernel was called on a CPU tensor")

    monkeypatch.setenv(kernels.KERNELS_ENV, "auto")
    monkeypatch.setattr(mamba_module, "selective_scan_fn", kernel_must_not_run)
    block = MambaBlock(8, d_state=4)
    block(torch.randn(1, 5, 8))
    assert block.kernel_path == ("mamba:cpu-kernel" if cpu_scan.available() else "mamba:torch-chunked")


def test_cli_run_trains_and_records_the_kernel_path(tmp_path, monkeypatch):
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    code = main(["run", "--model", "mamba", "--task", "mqar", "--preset", "smoke", "--results", str(tmp_path),
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    (row,) = iter_rows(read_runs(tmp_path))
    assert row["status"] == "ok" and row["steps"] == 8
    # training (fused backward) and evaluation both run the compiled CPU kernel, where it builds
    expected = "mamba:cpu-kernel" if cpu_scan.available() else "mamba:torch-chunked"
    assert row["kernels"] == expected
    assert 0.0 <= row["accuracy"] <= 1.0


def test_cli_fast_without_kernel_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    monkeypatch.setattr(mamba_module, "selective_scan_fn", None)
    assert main(["run", "--model", "mamba", "--task", "mqar", "--preset", "smoke", "--results", str(tmp_path),
                 "--no-progress"]) == 2
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------- compiled CPU kernel

needs_cpu_kernel = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                      reason="no C compiler to build the CPU kernel")


def time_major(t: torch.Tensor) -> torch.Tensor:
    return t.detach().transpose(1, 2)  # (B, X, L) -> (B, L, X), a view: the kernel must honour the strides


@needs_cpu_kernel
@pytest.mark.parametrize(("batch", "dim", "length"), [(1, 16, 1), (2, 6, 37), (1, 64, 40), (3, 50, 64), (2, 130, 33)])
@pytest.mark.parametrize("optional", [True, False])
def test_cpu_kernel_matches_sequential_reference(batch, dim, length, optional):
    """Each block width (16, 32, 64), partial blocks and several blocks per row, with and without D and z."""
    assert cpu_scan.available(), cpu_scan.unavailable_reason()
    inputs = {name: t.detach() for name, t in scan_inputs(batch, dim, d_state=5, length=length).items()}
    if not optional:
        inputs["D"] = inputs["z"] = None
    expected = selective_scan_ref(**inputs, delta_softplus=True)  # (B, D, L)
    with torch.no_grad():
        y = cpu_scan.selective_scan_cpu(time_major(inputs["u"]), time_major(inputs["delta"]), inputs["A"],
                                        time_major(inputs["B"]), time_major(inputs["C"]), inputs["D"],
                                        None if inputs["z"] is None else time_major(inputs["z"]),
                                        delta_bias=inputs["delta_bias"])
    assert relative_error(y.transpose(1, 2), expected) < TOLERANCE


@needs_cpu_kernel
@pytest.mark.parametrize(("batch", "dim", "length"), [(1, 16, 9), (2, 70, 33)])
def test_cpu_kernel_projects_low_rank_delta_itself(batch, dim, length):
    """delta_proj_weight (mamba_inner_fn's fusion): the kernel's own dt_proj equals passing the projected delta,
    with delta, B and C read as column slices of one x_proj-like output, as the Mamba block hands them over."""
    rank, d_state = 3, 4
    inputs = {name: t.detach() for name, t in scan_inputs(batch, dim, d_state, length).items()}
    weight = torch.randn(dim, rank) / rank ** 0.5
    projected = torch.randn(batch, length, rank + 2 * d_state)  # (dt, B, C) side by side
    low_rank, B, C = projected.split([rank, d_state, d_state], dim=-1)
    expected = selective_scan_ref(inputs["u"], (low_rank @ weight.t()).transpose(1, 2), inputs["A"],
                                  B.transpose(1, 2), C.transpose(1, 2), inputs["D"], inputs["z"],
                                  delta_bias=inputs["delta_bias"], delta_softplus=True)
    with torch.no_grad():
        y = cpu_scan.selective_scan_cpu(time_major(inputs["u"]), low_rank, inputs["A"], B, C, inputs["D"],
                                        time_major(inputs["z"]), delta_bias=inputs["delta_bias"],
                                        delta_proj_weight=weight)
    assert relative_error(y.transpose(1, 2), expected) < TOLERANCE
    with pytest.raises(ValueError, match="delta has shape"):
        cpu_scan.selective_scan_cpu(time_major(inputs["u"]), low_rank, inputs["A"], B, C,
                                    delta_proj_weight=torch.randn(dim, rank + 1))


@needs_cpu_kernel
def test_cpu_conv_matches_torch_conv():
    block = MambaBlock(24, d_state=4, d_conv=4)
    x = torch.randn(2, 19, 48)
    with torch.no_grad():
        expected = torch.nn.functional.silu(block.conv1d(x.transpose(1, 2))[..., :19]).transpose(1, 2)
        got = cpu_scan.causal_conv_silu(x, block.conv1d.weight.squeeze(1), block.conv1d.bias)
    assert relative_error(got, expected) < TOLERANCE


@needs_cpu_kernel
def test_block_trains_and_infers_on_the_cpu_kernel_and_matches_the_pytorch_path(monkeypatch):
    """The whole block, forward and every parameter's gradient: the kernel (conv in torch, fused scan backward)
    against the chunked PyTorch path with the same weights."""
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    block = MambaBlock(32, d_state=8)
    with torch.no_grad():  # random rates and step sizes, so the scan is not near-trivial
        block.A_log.normal_()
        block.dt_proj.bias.normal_()
    reference = MambaBlock(32, d_state=8)
    reference.load_state_dict(block.state_dict())
    x = torch.randn(2, 50, 32)
    grad_out = torch.randn(2, 50, 32)
    trained = block(x)
    trained.backward(grad_out)
    assert block.kernel_path == "mamba:cpu-kernel"
    monkeypatch.setenv(kernels.KERNELS_ENV, "ref")
    expected = reference(x)
    expected.backward(grad_out)
    assert reference.kernel_path == "mamba:torch-chunked"  # ref: PyTorch only
    assert relative_error(trained, expected) < TOLERANCE
    for (name, ours), theirs in zip(block.named_parameters(), reference.parameters()):
        assert relative_error(ours.grad, theirs.grad) < TOLERANCE, name
    monkeypatch.delenv(kernels.KERNELS_ENV)
    with torch.inference_mode():
        inferred = block(x)
    assert relative_error(inferred, expected) < TOLERANCE


def _fused_inputs(batch: int, length: int, dim: int, d_state: int, rank: int, dtype: torch.dtype,
                  optional: bool) -> tuple[torch.Tensor | None, ...]:
    """selective_scan_cpu_train's arguments, time-major, all requiring grad (absent optional ones are None)."""
    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, dtype=dtype)).requires_grad_()
    A = (-torch.rand(dim, d_state, dtype=dtype) - 0.2).requires_grad_()
    D, z, delta_bias = (leaf(dim), leaf(batch, length, dim), leaf(dim)) if optional else (None, None, None)
    return (leaf(batch, length, dim), leaf(batch, length, rank or dim), A, leaf(batch, length, d_state),
            leaf(batch, length, d_state), D, z, delta_bias, leaf(dim, rank, scale=0.5) if rank else None)


def _reference_time_major(u, delta, A, B, C, D, z, delta_bias, weight):
    """selective_scan_ref on the fused kernel's time-major arguments (dt_proj applied first)."""
    if weight is not None:
        delta = delta @ weight.t()
    channels_first = [None if t is None else t.transpose(1, 2) for t in (u, delta, B, C, z)]
    u, delta, B, C, z = channels_first
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True).transpose(1, 2)


@needs_cpu_kernel
@pytest.mark.parametrize("rank", [0, 3])
@pytest.mark.parametrize("optional", [True, False])
def test_fused_backward_passes_gradcheck_in_float64(rank, optional):
    """The C backward (its double build) against finite differences, across two saved chunks and a partial block."""
    assert cpu_scan.available(), cpu_scan.unavailable_reason()
    length = cpu_scan.SAVE_CHUNK + 5
    inputs = _fused_inputs(2, length, 5, 3, rank, torch.float64, optional)
    assert torch.autograd.gradcheck(cpu_scan.selective_scan_cpu_train, inputs, eps=1e-6, atol=1e-5)
    expected = _reference_time_major(*inputs)
    assert relative_error(cpu_scan.selective_scan_cpu_train(*inputs), expected) < 1e-12


@needs_cpu_kernel
@pytest.mark.parametrize(("batch", "length", "dim", "rank"), [(3, 100, 70, 4), (1, 64, 16, 0), (2, 33, 130, 2)])
def test_fused_backward_matches_the_chunked_pytorch_path_in_float32(batch, length, dim, rank):
    """float32 kernel gradients against the chunked PyTorch scan's (itself held to the reference above)."""
    inputs = _fused_inputs(batch, length, dim, 16, rank, torch.float32, optional=True)
    copies = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    y = cpu_scan.selective_scan_cpu_train(*inputs)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    u, delta, A, B, C, D, z, delta_bias, weight = copies
    if weight is not None:
        delta = delta @ weight.t()
    expected = selective_scan_fast(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                                   D, z.transpose(1, 2), delta_bias, delta_softplus=True).transpose(1, 2)
    expected.backward(grad_out)
    assert relative_error(y, expected) < TOLERANCE
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_proj_weight")
    for name, ours, theirs in zip(names, inputs, copies):
        if ours is not None:
            assert relative_error(ours.grad, theirs.grad) < TOLERANCE, name


@needs_cpu_kernel
def test_cpu_kernel_refuses_gradients_bad_shapes_growing_states_and_big_d_state():
    u = torch.randn(1, 8, 4, requires_grad=True)
    A, B = -torch.rand(4, 3), torch.randn(1, 8, 3)
    with pytest.raises(RuntimeError, match="have no backward"):
        cpu_scan.selective_scan_cpu(u, u.detach().abs(), A, B, B)
    with pytest.raises(ValueError, match="C has shape"):
        cpu_scan.selective_scan_cpu(u.detach(), u.detach().abs(), A, B, B[:, :5])
    with pytest.raises(ValueError, match="A must be <= 0"):
        cpu_scan.selective_scan_cpu(u.detach(), u.detach().abs(), -A, B, B)
    big = cpu_scan.MAX_STATE + 1
    with pytest.raises(ValueError, match="d_state"):
        cpu_scan.selective_scan_cpu(u.detach(), u.detach().abs(), -torch.rand(4, big), torch.randn(1, 8, big),
                                    torch.randn(1, 8, big))


def test_cpu_kernel_without_compiler_falls_back(monkeypatch, tmp_path):
    """No compiler: the kernel reports why, and the block runs the PyTorch scan."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(cpu_scan.CACHE_ENV, str(tmp_path / "kernels"))
    cpu_scan._build.cache_clear()
    try:
        assert not cpu_scan.available()
        assert "no-such-compiler" in cpu_scan.unavailable_reason()
        block = MambaBlock(8, d_state=4)
        with torch.inference_mode():
            block(torch.randn(1, 5, 8))
        assert block.kernel_path == "mamba:torch-chunked"
    finally:
        cpu_scan._build.cache_clear()


def test_loading_the_kernel_keeps_denormals():
    """The kernel is compiled with -ffast-math but must not switch the process to flush-to-zero."""
    cpu_scan.available()
    assert float(torch.tensor(1e-40) * 1.0) > 0


# ---------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or mamba_module.selective_scan_fn is None,
                    reason="needs CUDA and mamba-ssm")
def test_cuda_kernel_matches_reference():
    inputs = scan_inputs(batch=2, dim=32, d_state=16, length=300, device="cuda")
    grad_out = torch.randn(2, 32, 300, device="cuda")
    ref_out, ref_grads = run_scan(selective_scan_ref, inputs, grad_out)
    for scan in (mamba_module.selective_scan_fn, selective_scan_fast):
        out, grads = run_scan(scan, inputs, grad_out)
        assert relative_error(out, ref_out) < 1e-3  # the kernel accumulates in another order
        for name in inputs:
            assert relative_error(grads[name], ref_grads[name]) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or mamba_module.selective_scan_fn is None,
                    reason="needs CUDA and mamba-ssm")
def test_block_fast_and_ref_paths_agree_on_cuda(monkeypatch):
    block = MambaBlock(32).cuda()
    x = torch.randn(2, 100, 32, device="cuda")
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    fast = block(x)
    # kernel_path lists every path a block has run: the set is emptied so each pass shows its own
    assert block.kernel_path in ("mamba:cuda", "mamba:cuda-scan")  # cuda-scan: without causal-conv1d
    block.paths_run.clear()
    monkeypatch.setenv(kernels.KERNELS_ENV, "ref")
    ref = block(x)
    assert block.kernel_path == "mamba:torch-chunked"
    assert relative_error(fast, ref) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or mamba_module.selective_scan_fn is None,
                    reason="needs CUDA and mamba-ssm")
def test_cli_run_on_cuda_records_only_the_cuda_kernel(tmp_path, monkeypatch):
    """On CUDA, auto runs mamba-ssm's kernel for training and evaluation alike (no CPU kernel, no PyTorch scan)."""
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    assert main(["run", "--model", "mamba", "--task", "mqar", "--preset", "smoke", "--results", str(tmp_path),
                 "--no-progress", "--device", "cuda"]) == 0
    (row,) = iter_rows(read_runs(tmp_path))
    assert row["status"] == "ok" and row["steps"] == 8
    assert row["kernels"] == ("mamba:cuda" if mamba_module.causal_conv1d_fn is not None else "mamba:cuda-scan")


def test_a_log_is_excluded_from_weight_decay():
    from seqbench.configure.config import TrainConfig
    from seqbench.train.lit import SeqbenchModule

    info = TaskInfo(name="toy", vocab_size=16, seq_len=8, num_classes=16, target="token", causal=True)
    model = build(MambaConfig(d_model=8, n_layers=1), info)
    optimizer = SeqbenchModule(model, info, TrainConfig()).configure_optimizers()["optimizer"]
    decayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    assert id(model.layers[0].mixer.A_log) not in decayed
    assert id(model.layers[0].mixer.in_proj.weight) in decayed
