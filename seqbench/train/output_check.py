"""The check of a model's output against its task, on the first batch of each stage.

A model that returns logits of the wrong shape can still train and score: (T, B, C) instead of
(B, T, C) flattens to the same number of rows and gives a plausible but wrong accuracy. So the harness
compares the first output of training, validation and test with the shape the targets imply and stops
with one line naming the model. When T == B a transposed output has the right shape and cannot be told
apart by shape alone; the check is against the targets' shape, which is what the loss pairs it with.
"""

from __future__ import annotations

import torch

from seqbench.contracts import ModelOutput, TaskInfo
from seqbench.errors import PluginError


def expected_logits_shape(targets: torch.Tensor, info: TaskInfo) -> tuple[int, ...]:
    """(B, T, C) for token targets (B, T), (B, C) for sequence targets (B,); C = info.num_classes."""
    return (*targets.shape, info.num_classes)


def check_output(out: ModelOutput, targets: torch.Tensor, info: TaskInfo, model: str, stage: str,
                 require_finite: bool = True, at_positions: bool = False) -> None:
    """Raise PluginError unless ``out.logits`` is a tensor of the expected shape with (when
    ``require_finite``: training has not diverged, which would explain them) finite values.
    ``at_positions``: the output of ``read_out_at``, checked against the scored targets ``(N,)``."""
    logits = out.logits
    if at_positions:
        layout = "(scored positions, num_classes) from read_out_at"
    else:
        layout = "(batch, seq_len, num_classes)" if info.target == "token" else "(batch, num_classes)"
    if not isinstance(logits, torch.Tensor):
        raise PluginError(f"model {model!r} returned {type(logits).__name__} on its first {stage} batch of task "
                          f"{info.name!r}; expected logits, a tensor {layout}, or a seqbench.api.ModelOutput")
    expected = expected_logits_shape(targets, info)
    if tuple(logits.shape) != expected:
        raise PluginError(f"model {model!r} returned logits of shape {tuple(logits.shape)} on its first {stage} "
                          f"batch of task {info.name!r}; expected {expected} = {layout} for its {info.target} "
                          "targets (see seqbench/api.py)")
    if require_finite and not bool(torch.isfinite(logits.detach()).all()):
        raise PluginError(f"model {model!r} returned non-finite logits (NaN or inf) on its first {stage} batch "
                          f"of task {info.name!r} (its training had not diverged)")
