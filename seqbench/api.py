"""The contract between the harness, tasks and models.

A task's data module exposes a :class:`TaskInfo`; a model plugin's ``build(config, info)`` returns a
plain ``nn.Module`` whose ``forward(tokens)`` returns logits, or a :class:`ModelOutput` when it has
more to report (gates, extra scalars). Models never see the run config.

Shapes: ``tokens`` is ``(B, T)`` int64. For ``info.target == "token"`` logits are ``(B, T, C)`` and
targets ``(B, T)`` with ``ignore_index`` at unscored positions; for ``"sequence"`` logits are
``(B, C)`` and targets ``(B,)``. Sequences shorter than ``seq_len`` are padded on the left with
``pad_id`` so that the last position is always the end of the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TaskInfo:
    name: str
    vocab_size: int  # token ids are in [0, vocab_size)
    seq_len: int  # T of every batch
    num_classes: int  # C of the logits
    target: Literal["token", "sequence"]  # per-position labels, or one label per sequence
    causal: bool  # True: outputs at position t may depend only on tokens <= t
    topology: Literal["chain", "ring"] = "chain"  # graph over positions, for graph models
    pad_id: int | None = None  # left padding token, when sequences vary in length
    ignore_index: int = IGNORE_INDEX
    metric: Literal["accuracy", "perplexity"] = "accuracy"
    ordinal: bool = False  # classes are ordered numbers (e.g. distances): also record ``mae`` of argmax


@dataclass
class ModelOutput:
    """What a model may return instead of bare logits.

    ``gates``: gate values in (0, 1) (any shape, one per gated unit: token or chunk); the harness
    adds ``lambda * gates.mean()`` to the loss when the module defines ``gate_lambda`` and reports
    ``gate_rate`` = fraction of gates above ``module.gate_threshold`` (default 0.5).
    ``extras``: scalar tensors logged and stored in the curves under their names.
    """

    logits: Any
    gates: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LengthLimited(Protocol):
    """A model that can run only up to some sequence length (e.g. learned absolute positions)."""

    def max_seq_len(self) -> int | None:
        """The longest sequence the model can take, or None for any length."""
