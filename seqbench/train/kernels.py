"""The one policy that picks between an optional fast kernel and its pure-PyTorch path.

``SEQBENCH_KERNELS`` (default ``auto``) decides for every model:

- ``auto``: the CUDA kernel when it is installed and the input is on CUDA; on the CPU, a compiled CPU
  kernel where one exists and applies (:func:`cpu_kernel_allowed`); else the PyTorch path;
- ``ref``: always the PyTorch path (a real run-time path, also on GPU: for parity checks);
- ``fast``: the CUDA kernel or a :class:`UserError` saying how to get it.

A model imports its CUDA kernel under ``try/except ImportError`` (the mamba_ssm pattern), passes whether
it imported to :func:`resolve`, asks :func:`cpu_kernel_allowed` before a CPU kernel, and records what ran
in a ``kernel_path`` attribute (the row's ``kernels``).
"""

from __future__ import annotations

import os
from typing import Literal

from seqbench.errors import UserError

KERNELS_ENV = "SEQBENCH_KERNELS"
POLICIES = ("auto", "ref", "fast")
CUDA_INSTALL_HINT = (
    "on a CUDA machine with torch installed: pip install --no-build-isolation mamba-ssm causal-conv1d "
    "(or the seqbench[cuda] extra; see docs/cuda.md)"
)


def policy() -> str:
    """The policy named by ``SEQBENCH_KERNELS``; an unknown value is a UserError."""
    value = os.environ.get(KERNELS_ENV, "auto").strip().lower() or "auto"
    if value not in POLICIES:
        raise UserError(f"{KERNELS_ENV}={os.environ[KERNELS_ENV]!r} is not a kernel policy: "
                        f"set it to one of {', '.join(POLICIES)} (or unset it for auto)")
    return value


def resolve(kernel_name: str, available: bool, on_cuda: bool) -> Literal["fast", "ref"]:
    """Which path runs ``kernel_name`` now: ``"fast"`` (the optional kernel) or ``"ref"`` (PyTorch).

    ``available``: the kernel imported; ``on_cuda``: the input lives on a CUDA device. Raises
    UserError when ``fast`` is forced but cannot run, naming the missing piece and how to get it.
    """
    chosen = policy()
    if chosen == "ref":
        return "ref"
    if chosen == "auto":
        return "fast" if available and on_cuda else "ref"
    if not available:
        raise UserError(f"{KERNELS_ENV}=fast but the {kernel_name} kernel is not installed; install it "
                        f"{CUDA_INSTALL_HINT}, or set {KERNELS_ENV}=auto to use the PyTorch path")
    if not on_cuda:
        raise UserError(f"{KERNELS_ENV}=fast but the {kernel_name} kernel needs CUDA and the input is on the CPU; "
                        f"run with --device cuda, or set {KERNELS_ENV}=auto to use the PyTorch path")
    return "fast"


def cpu_kernel_allowed() -> bool:
    """Whether a compiled CPU kernel may replace the PyTorch path: under ``auto`` only (``ref`` keeps
    PyTorch; ``fast`` means the CUDA kernels). The model still checks the kernel built and applies."""
    return policy() == "auto"
