"""A compiled CPU kernel for Mamba-1's selective scan, forward and fused backward: Mamba's CPU fast path.

mamba-ssm's kernels are CUDA-only and no maintained library ships a CPU selective scan, so this one
is ours: ``cpu_scan.c``, a short C file built with the system C compiler on first use and loaded with
ctypes (it also has Mamba's causal conv + SiLU in the time-major layout the scan reads). At d_model 64
(128 channels, 16 states), L = 8192 it runs one layer's scan in ~3 ms on 2 cores, against ~35 ms for
the chunked PyTorch scan, whose per-step Python dispatch is most of its cost.

:func:`selective_scan_cpu` is the forward alone (no autograd: evaluation, inference benchmarks).
:func:`selective_scan_cpu_train` is differentiable: its forward saves only the state before every
``SAVE_CHUNK`` steps and its C backward re-runs each chunk from there (mamba-ssm's CUDA pattern), with
dt_proj, softplus, the D skip and the SiLU gate fused in both directions. At d 64 (128 channels), L 1024,
batch 8, 1 thread: ~7 ms forward, ~25 ms backward for the scan; the whole Mamba layer's forward+backward
~0.075 s against mambapy's ~1.3 s (``benchmarks/bench_mamba_cpu.py``, on a busy machine). The source
also compiles as double (``_f64`` functions), so ``torch.autograd.gradcheck`` checks the backward.

The Mamba block uses the kernel whenever the policy allows (``SEQBENCH_KERNELS`` is ``auto``). Without a
C compiler, or when the build fails, :func:`available` is False (the reason is in
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
SAVE_CHUNK = 32  # steps between the states the training forward saves; the backward re-runs each chunk
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
        # the float kernel, and the same source as double (functions suffixed _f64) for gradcheck
        objects = [str(Path(scratch) / name) for name in ("cpu_scan.o", "cpu_scan_f64.o")]
        lib = Path(scratch) / target.name
        for command in ([compiler, *flags, "-c", str(SOURCE), "-o", objects[0]],
                        [compiler, *flags, "-DSCAN_DOUBLE", "-c", str(SOURCE), "-o", objects[1]],
                        [compiler, *LINK_FLAGS, *objects, "-o", str(lib), "-lm"]):
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
    inputs = [int64, int64, int64, int64,  # batch, T, E, N
              pointer, pointer, int64, int64, pointer,  # u, delta, delta_stride, delta_rank, delta_weight
              pointer, pointer, pointer, pointer, int64,  # delta_bias, A, Bm, Cm, bc_stride
              pointer, pointer, int64]  # D, z, z_stride
    for suffix in ("", "_f64"):
        forward = getattr(build.library, "selective_scan_forward" + suffix)
        forward.argtypes = [*inputs, pointer, pointer, int64,  # y, starts, chunk
                            ctypes.c_int, ctypes.c_int]  # block, threads
        forward.restype = None
        backward = getattr(build.library, "selective_scan_backward" + suffix)
        backward.argtypes = [*inputs, pointer, int64, pointer,  # starts, chunk, grad_y
                             pointer, pointer, pointer, pointer, pointer, pointer, pointer,  # grad_u ... grad_C
                             ctypes.c_int, ctypes.c_int]  # block, threads
        backward.restype = ctypes.c_int
    build.library.causal_conv_silu.argtypes = [int64] * 4 + [pointer, int64] + [pointer] * 3 + [ctypes.c_int]
    build.library.causal_conv_silu.restype = None
    return build


def available() -> bool:
    """Whether the kernel is built (building it on the first call)."""
    return _build().library is not None


def unavailable_reason() -> str | None:
    return _build().failure


def _rows(tensor: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """A (batch, T, width) tensor of ``dtype`` whose time rows are contiguous and evenly spaced, and that spacing.

    Column slices of a projection's output qualify as they are (no copy); anything else is copied.
    """
    tensor = tensor.detach().to(dtype)
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
        raise RuntimeError("selective_scan_cpu and causal_conv_silu have no backward; "
                           "train with selective_scan_cpu_train (or selective_scan_fast)")


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


class _ScanInputs:
    """The scan's inputs checked and laid out for the C code (time rows evenly spaced, one dtype), kept
    alive while it reads their raw pointers, and the leading arguments of both C functions."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_proj_weight):
        batch, length, channels = u.shape
        d_state = A.shape[1]
        rank = 0 if delta_proj_weight is None else delta_proj_weight.shape[1]
        delta_shape = (batch, length, rank or channels)
        for name, tensor, shape in (("u", u, u.shape), ("delta", delta, delta_shape), ("A", A, (channels, d_state)),
                                    ("B", B, (batch, length, d_state)), ("C", C, (batch, length, d_state)),
                                    ("D", D, (channels,)), ("z", z, u.shape), ("delta_bias", delta_bias, (channels,)),
                                    ("delta_proj_weight", delta_proj_weight, (channels, rank))):
            _check(name, tensor, tuple(shape))
        if d_state > MAX_STATE:
            raise ValueError(f"cpu_scan: d_state {d_state} is over the kernel's {MAX_STATE}; use selective_scan_fast")
        if A.numel() and float(A.max()) > 0:
            raise ValueError("cpu_scan: A must be <= 0 (decaying states; Mamba uses A = -exp(A_log))")
        # float64 only when everything is (gradcheck); else float32, as mamba-ssm keeps its state
        given = [t for t in (u, delta, A, B, C, D, z, delta_bias, delta_proj_weight) if t is not None]
        self.dtype = torch.float64 if all(t.dtype == torch.float64 for t in given) else torch.float32
        self.suffix = "_f64" if self.dtype == torch.float64 else ""
        self.shape, self.rank = (batch, length, channels, d_state), rank
        self.u = u.detach().to(self.dtype).contiguous()
        self.delta, delta_stride = _rows(delta, self.dtype)
        self.B, bc_stride = _rows(B, self.dtype)
        self.C, c_stride = _rows(C, self.dtype)
        if c_stride != bc_stride:
            self.B, self.C = self.B.contiguous(), self.C.contiguous()
            bc_stride = d_state
        self.A_t = A.detach().to(self.dtype).t().contiguous()  # (N, E)
        self.weight_t = (None if delta_proj_weight is None
                         else delta_proj_weight.detach().to(self.dtype).t().contiguous())  # (R, E)
        self.D = None if D is None else D.detach().to(self.dtype).contiguous()
        self.delta_bias = (self.u.new_zeros(channels) if delta_bias is None
                           else delta_bias.detach().to(self.dtype).contiguous())
        self.z, z_stride = (None, 0) if z is None else _rows(z, self.dtype)
        self.arguments = (batch, length, channels, d_state, self.u.data_ptr(), self.delta.data_ptr(), delta_stride,
                          rank, _address(self.weight_t), self.delta_bias.data_ptr(), self.A_t.data_ptr(),
                          self.B.data_ptr(), self.C.data_ptr(), bc_stride, _address(self.D), _address(self.z),
                          z_stride)

    def block(self, threads: int) -> int:
        """The widest channel block that still gives every thread one (see cpu_scan.c)."""
        batch, _, channels, _ = self.shape
        return next((w for w in (64, 32) if batch * -(-channels // w) >= threads), 16)

    def forward(self, starts: torch.Tensor | None = None) -> torch.Tensor:
        """y (batch, T, E); with ``starts`` (batch, ceil(T / SAVE_CHUNK), N, E), the chunks' start states too."""
        batch, length, channels, _ = self.shape
        y = torch.empty(batch, length, channels, dtype=self.dtype)
        threads = torch.get_num_threads()
        getattr(_build().library, "selective_scan_forward" + self.suffix)(
            *self.arguments, y.data_ptr(), _address(starts), SAVE_CHUNK, self.block(threads), threads)
        return y

    def backward(self, starts: torch.Tensor, grad_y: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """dL/du, dL/d(delta + delta_bias) before softplus ("delta_pre"), dL/dz, dL/dA (E, N), dL/dD,
        dL/dB, dL/dC, from the forward's ``starts`` and dL/dy."""
        batch, length, channels, d_state = self.shape
        threads = torch.get_num_threads()
        block = self.block(threads)
        blocks = -(-channels // block)
        grad_y = grad_y.to(self.dtype).contiguous()
        new = functools.partial(torch.empty, dtype=self.dtype)
        grads = {"u": new(batch, length, channels), "delta_pre": new(batch, length, channels),
                 "z": None if self.z is None else new(batch, length, channels),
                 "A": new(batch, d_state, channels), "D": new(batch, channels),
                 "B": new(batch, blocks, length, d_state), "C": new(batch, blocks, length, d_state)}
        status = getattr(_build().library, "selective_scan_backward" + self.suffix)(
            *self.arguments, starts.data_ptr(), SAVE_CHUNK, grad_y.data_ptr(),
            *(_address(grads[name]) for name in ("u", "delta_pre", "z", "A", "D", "B", "C")), block, threads)
        if status != 0:
            raise MemoryError("cpu_scan: the backward could not allocate its per-thread work buffer")
        # the per-row and per-block partial sums (no two threads write one value in the C code)
        grads["A"], grads["D"] = grads["A"].sum(0).t(), grads["D"].sum(0)
        grads["B"], grads["C"] = grads["B"].sum(1), grads["C"].sum(1)
        return grads


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
    _no_grad_needed(u, delta, A, B, C, D, z, delta_bias, delta_proj_weight)
    return _ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_proj_weight).forward()


def selective_scan_cpu_train(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                             delta_bias: torch.Tensor | None = None,
                             delta_proj_weight: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`selective_scan_cpu` with a backward (the fused C one): the same arguments, differentiable in all.

    float32 (float64 when every input is, for gradcheck); the result has u's dtype.
    """
    return _FusedScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_proj_weight)


class _FusedScan(torch.autograd.Function):
    """The C forward saving the state before every SAVE_CHUNK steps; the C backward re-running each chunk."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_proj_weight):
        inputs = _ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_proj_weight)
        batch, length, channels, d_state = inputs.shape
        starts = torch.empty(batch, -(-length // SAVE_CHUNK), d_state, channels, dtype=inputs.dtype)
        y = inputs.forward(starts)
        ctx.inputs, ctx.starts = inputs, starts  # detached: no reference cycle through the graph
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias, delta_proj_weight)]
        return y.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        inputs = ctx.inputs
        grads = inputs.backward(ctx.starts, grad_y)
        grad_pre = grads["delta_pre"]  # (batch, T, E)
        grad_delta, grad_weight = grad_pre, None
        if inputs.rank:  # delta = low-rank input @ weight.T + bias, before softplus
            grad_delta = grad_pre @ inputs.weight_t.t()  # (batch, T, R)
            grad_weight = grad_pre.flatten(0, 1).t() @ inputs.delta.flatten(0, 1)  # (E, R)
        grad_bias = grad_pre.sum((0, 1))
        result = (grads["u"], grad_delta, grads["A"], grads["B"], grads["C"], grads["D"], grads["z"], grad_bias,
                  grad_weight)
        return tuple(None if g is None or dtype is None or not need else g.to(dtype)
                     for g, dtype, need in zip(result, ctx.dtypes, ctx.needs_input_grad))
