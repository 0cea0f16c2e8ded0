"""A compiled CPU kernel for Mamba-1's selective scan, forward only: the inference fast path on CPU.

mamba-ssm's kernels are CUDA-only and no maintained library ships a CPU selective scan, so this one
is ours: ``cpu_scan.c``, a short C file built with the system C compiler on first use and loaded with
ctypes (it also has Mamba's causal conv + SiLU in the time-major layout the scan reads). At d_model 64
(128 channels, 16 states), L = 8192 it runs one layer's scan in ~3 ms on 2 cores, against ~35 ms for
the chunked PyTorch scan, whose per-step Python dispatch is most of its cost.

It has no backward: the Mamba block uses it only when no gradient is needed (evaluation, inference
benchmarks) and the policy allows (``SEQBENCH_KERNELS`` is ``auto``); training keeps the PyTorch
scan. Without a C compiler, or when the build fails, :func:`available` is False (the reason is in
:func:`unavailable_reason`) and the PyTorch path runs; the row's ``kernels`` column says which ran.

Builds are cached under ``~/.cache/seqbench/kernels`` (``SEQBENCH_KERNEL_CACHE`` to move it), keyed by
the source, compiler, flags and CPU, and written atomically, so concurrent processes can share them.
Loading a library runs its code, so the cache must be trusted: a folder owned by another user or
writable by group or others is refused (with a warning; the PyTorch scan runs), and a library is loaded
only when it matches the sha256 recorded beside it when it was built (else it is rebuilt).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_scan.c")
CACHE_ENV = "SEQBENCH_KERNEL_CACHE"
MAX_STATE = 256  # N: the kernel keeps each channel block's (N, 64) state on its thread's stack
# -ffast-math lets gcc call glibc's vector expf; it goes to the compile step only: linking a shared
# library with it (gcc < 13) adds crtfastmath.o, which flushes denormals to zero for the whole process.
COMPILE_FLAGS = ("-O3", "-ffast-math", "-fopenmp", "-fPIC", "-std=c99")
NATIVE_FLAG = "-march=native"  # dropped if the compiler refuses it
LINK_FLAGS = ("-shared", "-fopenmp")  # libgomp.so.1: the process already has torch's copy, so one runtime


def _cache_dir() -> Path:
    value = os.environ.get(CACHE_ENV, "")
    return Path(value) if value else Path.home() / ".cache" / "seqbench" / "kernels"


def _cpu_identity() -> str:
    """What -march=native compiled for: a build is only reused on the same kind of CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return platform.machine() + "".join(sorted({line for line in lines if line.startswith(wanted)}))


def _untrusted_folder_reason(folder: Path) -> str | None:
    """Why ``folder`` may not hold libraries this process loads (None if it may): anyone who can write
    there could put their code in place of ours."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.stat()  # follows a symbolic link: the folder that would really be used
    except OSError as error:
        return f"the kernel cache {folder} is not usable: {error}"
    if info.st_uid != os.getuid():
        return (f"the kernel cache {folder} is owned by another user (uid {info.st_uid}); "
                f"set {CACHE_ENV} to a folder of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"the kernel cache {folder} is writable by group or others; "
                f"run `chmod go-w {folder}` or set {CACHE_ENV} to a private folder")
    return None


def _digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _matches_its_build(library: Path) -> bool:
    """Whether ``library`` is what its build recorded (its sha256); warns, naming it, when it is not."""
    try:
        recorded = _digest_path(library).read_text().strip()
    except OSError:
        recorded = None
    if recorded == _sha256(library):
        return True
    why = "no sha256 was recorded for it" if recorded is None else "it does not match the sha256 recorded at its build"
    warnings.warn(f"CPU scan kernel {library} is not loaded: {why}; rebuilding it", stacklevel=3)
    return False


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile and link into ``target`` atomically, its sha256 beside it; CalledProcessError on failure."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        obj, lib = Path(scratch) / "cpu_scan.o", Path(scratch) / target.name
        for command in ([compiler, *flags, "-c", str(SOURCE), "-o", str(obj)],
                        [compiler, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"]):
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
        digest = _digest_path(lib)
        digest.write_text(_sha256(lib) + "\n")
        # a reader between the two renames sees a mismatch and rebuilds: wasted work, never a wrong load
        os.replace(lib, target)
        os.replace(digest, _digest_path(target))


class _Build:
    library: ctypes.CDLL | None = None
    failure: str | None = None


def _build_key(source: str, compiler: str, flags: tuple[str, ...], cpu: str) -> str:
    return hashlib.sha256("\0".join([source, compiler, *flags, *LINK_FLAGS, cpu]).encode()).hexdigest()[:16]


@functools.cache
def _build() -> _Build:
    build = _Build()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        build.failure = "no C compiler found (install gcc, or set CC)"
        return build
    folder = _cache_dir()
    build.failure = _untrusted_folder_reason(folder)
    if build.failure is not None:
        warnings.warn(f"CPU scan kernel not loaded, the PyTorch scan runs instead: {build.failure}", stacklevel=2)
        return build
    errors = []
    source, cpu = SOURCE.read_text(), _cpu_identity()
    for flags in ((*COMPILE_FLAGS, NATIVE_FLAG), COMPILE_FLAGS):
        target = folder / f"cpu_scan-{_build_key(source, compiler, flags, cpu)}.so"
        try:
            if not (target.exists() and _matches_its_build(target)):
                _compile(compiler, flags, target)
            build.library = ctypes.CDLL(str(target))
            break
        except subprocess.CalledProcessError as error:
            errors.append(f"{' '.join(error.cmd[:2])} ...: {(error.stderr or '').strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as error:
            errors.append(str(error))
    if build.library is None:
        build.failure = "building cpu_scan.c failed: " + " | ".join(errors)
        log.info("CPU scan kernel unavailable, the PyTorch scan runs instead: %s", build.failure)
        return build
    int64, pointer = ctypes.c_int64, ctypes.c_void_p
    # the C signatures, argument for argument (a mismatch here corrupts memory, so keep them in step)
    build.library.selective_scan_forward.argtypes = [
        int64, int64, int64, int64,  # batch, T, E, N
        pointer, pointer, int64, int64, pointer,  # u, delta, delta_stride, delta_rank, delta_weight
        pointer, pointer, pointer, pointer, int64,  # delta_bias, A, Bm, Cm, bc_stride
        pointer, pointer, int64, pointer,  # D, z, z_stride, y
        ctypes.c_int, ctypes.c_int]  # block, threads
    build.library.causal_conv_silu.argtypes = [int64] * 4 + [pointer, int64] + [pointer] * 3 + [ctypes.c_int]
    for function in (build.library.selective_scan_forward, build.library.causal_conv_silu):
        function.restype = None
    return build


def available() -> bool:
    """Whether the kernel is built (building it on the first call)."""
    return _build().library is not None


def unavailable_reason() -> str | None:
    return _build().failure


def _rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A (batch, T, width) float32 tensor whose time rows are contiguous and evenly spaced, and that spacing.

    Column slices of a projection's output qualify as they are (no copy); anything else is copied.
    """
    tensor = tensor.detach().float()
    batch_stride, row_stride, column_stride = tensor.stride()
    if column_stride == 1 and row_stride >= tensor.shape[2] and batch_stride == tensor.shape[1] * row_stride:
        return tensor, row_stride
    return tensor.contiguous(), tensor.shape[2]


def _address(tensor: torch.Tensor | None) -> int | None:
    """A tensor's data pointer for the C code; None (NULL) for an absent optional input."""
    return None if tensor is None else tensor.data_ptr()


def _check(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    """The C code trusts shapes and devices: check them before handing it raw pointers."""
    if tensor is None:
        return
    if tuple(tensor.shape) != shape:
        raise ValueError(f"cpu_scan: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    if tensor.device.type != "cpu":
        raise ValueError(f"cpu_scan: {name} is on {tensor.device}; this kernel runs on the CPU")


def _no_grad_needed(*tensors: torch.Tensor | None) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("cpu_scan kernels have no backward; use selective_scan_fast when training")


def causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """silu(depthwise causal conv1d(x)), time-major: x (batch, T, E), weight (E, K), bias (E,) -> (batch, T, E)."""
    batch, length, channels = x.shape
    width = weight.shape[1]
    _check("x", x, tuple(x.shape))  # the device only: x sets the shape
    _check("weight", weight, (channels, width))
    _check("bias", bias, (channels,))
    _no_grad_needed(x, weight, bias)
    x, x_stride = _rows(x)
    weight_t = weight.detach().float().t().contiguous()  # (K, E): the inner loop runs over channels
    bias = bias.detach().float().contiguous()
    out = torch.empty(batch, length, channels, dtype=torch.float32)
    _build().library.causal_conv_silu(batch, length, channels, width, x.data_ptr(), x_stride, weight_t.data_ptr(),
                                      bias.data_ptr(), out.data_ptr(), torch.get_num_threads())
    return out


def selective_scan_cpu(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None,
                       delta_proj_weight: torch.Tensor | None = None) -> torch.Tensor:
    """y (batch, T, E) from time-major inputs; no autograd. Call only when :func:`available`.

    mamba-ssm's ``selective_scan_fn`` with ``delta_softplus=True``, time-major: u, delta, z (batch, T, E);
    A (E, N); B, C (batch, T, N); D, delta_bias (E,). The kernel adds delta_bias and applies softplus.
    With ``delta_proj_weight`` (E, R), as in mamba-ssm's ``mamba_inner_fn``, delta is the low-rank
    (batch, T, R) input and the kernel computes ``delta @ delta_proj_weight.T`` itself.
    """
    batch, length, channels = u.shape
    d_state = A.shape[1]
    rank = 0 if delta_proj_weight is None else delta_proj_weight.shape[1]
    delta_shape = (batch, length, rank or channels)
    for name, tensor, shape in (("u", u, u.shape), ("delta", delta, delta_shape), ("A", A, (channels, d_state)),
                                ("B", B, (batch, length, d_state)), ("C", C, (batch, length, d_state)),
                                ("D", D, (channels,)), ("z", z, u.shape), ("delta_bias", delta_bias, (channels,)),
                                ("delta_proj_weight", delta_proj_weight, (channels, rank))):
        _check(name, tensor, tuple(shape))
    _no_grad_needed(u, delta, A, B, C, D, z, delta_bias, delta_proj_weight)
    if d_state > MAX_STATE:
        raise ValueError(f"cpu_scan: d_state {d_state} is over the kernel's {MAX_STATE}; use selective_scan_fast")
    if A.numel() and float(A.max()) > 0:
        raise ValueError("cpu_scan: A must be <= 0 (decaying states; Mamba uses A = -exp(A_log))")
    # float32 and alive until the call returns: the C code reads raw pointers
    u = u.detach().float().contiguous()
    delta, delta_stride = _rows(delta)
    B, bc_stride = _rows(B)
    C, c_stride = _rows(C)
    if c_stride != bc_stride:
        B, C = B.contiguous(), C.contiguous()
        bc_stride = d_state
    A_t = A.detach().float().t().contiguous()  # (N, E)
    weight_t = None if delta_proj_weight is None else delta_proj_weight.detach().float().t().contiguous()  # (R, E)
    D = None if D is None else D.detach().float().contiguous()
    delta_bias = (u.new_zeros(channels) if delta_bias is None else delta_bias).detach().float().contiguous()
    z, z_stride = (None, 0) if z is None else _rows(z)
    y = torch.empty(batch, length, channels, dtype=torch.float32)
    threads = torch.get_num_threads()
    # the widest channel block that still gives every thread one (see cpu_scan.c)
    block = next((w for w in (64, 32) if batch * -(-channels // w) >= threads), 16)
    _build().library.selective_scan_forward(batch, length, channels, d_state, u.data_ptr(), delta.data_ptr(),
                                            delta_stride, rank, _address(weight_t), delta_bias.data_ptr(),
                                            A_t.data_ptr(), B.data_ptr(), C.data_ptr(), bc_stride, _address(D),
                                            _address(z), z_stride, y.data_ptr(), block, threads)
    return y
