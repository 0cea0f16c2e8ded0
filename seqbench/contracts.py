"""The contract between the harness, tasks and models, declared once (plugins import it through
:mod:`seqbench.api`; the harness's own modules import it from here).

A task plugin's ``build(config, seed, batch_size)`` returns a :class:`TaskData`, which describes its
batches with a :class:`TaskInfo`; a model plugin's ``build(config, info)`` (:class:`ModelBuilder`)
returns a :class:`SequenceModel`: a plain ``nn.Module`` whose ``forward(tokens)`` returns logits, or a
:class:`ModelOutput` when it has more to report (gates, extra scalars). Models never see the run config.

A model may offer optional capabilities, each declared below as a ``Protocol`` (:class:`GateSchedule`,
:class:`GateThreshold`, :class:`GateModes`, :class:`ForcibleGates`, :class:`LayerProbes`,
:class:`KernelReport`, :class:`PositionReadout`). A model has one by defining its members; the
harness asks for them only through :mod:`seqbench.capabilities`.

Shapes: ``tokens`` is ``(B, T)`` int64. For ``info.target == "token"`` logits are ``(B, T, C)`` and
targets ``(B, T)`` with ``ignore_index`` at unscored positions; for ``"sequence"`` logits are
``(B, C)`` and targets ``(B,)``. Sequences shorter than ``seq_len`` are padded on the left with
``pad_id`` so that the last position is always the end of the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

IGNORE_INDEX = -100


@dataclass(frozen=True, kw_only=True)
class TaskInfo:
    """What a model needs to know about a task's batches. A data module's ``info()`` gives the shapes;
    the harness fills ``name``, ``causal`` and ``metric`` from the task's
    :class:`~seqbench.registry.TaskSpec`, their one declaration (:func:`seqbench.configure.resolve.task_info`)."""

    vocab_size: int  # token ids are in [0, vocab_size)
    seq_len: int  # T of every batch
    num_classes: int  # C of the logits
    target: Literal["token", "sequence"]  # per-position labels, or one label per sequence
    name: str = ""  # the registered task name
    causal: bool = False  # True: outputs at position t may depend only on tokens <= t
    topology: Literal["chain", "ring"] = "chain"  # graph over positions, for graph models
    pad_id: int | None = None  # left padding token, when sequences vary in length
    ignore_index: int = IGNORE_INDEX
    metric: Literal["accuracy", "perplexity"] = "accuracy"
    ordinal: bool = False  # classes are ordered numbers (e.g. distances): also record ``mae`` of argmax
    # Which training targets the evaluation also scores: "all" of them, or only each row's "last"
    # (associative recall trains on every next token but scores only the answer). A gated model's
    # adaptive lambda follows the loss there: the unscored positions' loss (the next random key) is
    # irreducible, and would hold lambda far below its maximum.
    eval_scores: Literal["all", "last"] = "all"


@dataclass
class ModelOutput:
    """What a model may return instead of bare logits.

    ``gates``: gate values in (0, 1) (any shape, one per gated unit: token or chunk); the harness
    adds ``lambda * gates.mean()`` to the loss for a :class:`GateSchedule` model and reports
    ``gate_rate`` = fraction of gates above the model's :class:`GateThreshold` (default 0.5).
    ``extras``: scalar tensors logged and stored in the curves under their names.
    """

    logits: Any
    gates: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the model


@runtime_checkable
class SequenceModel(Protocol):
    """What a model's ``build`` returns: an ``nn.Module`` mapping ``tokens`` (B, T) int64 to logits
    ((B, T, C) for token targets, (B, C) for sequence targets, C = ``info.num_classes``) or to a
    :class:`ModelOutput`. Called by the harness for every training, validation and test batch; its
    first training and first evaluation outputs are checked against the task (shape, finite values)."""

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor | ModelOutput: ...

    def parameters(self, recurse: bool = True) -> Any: ...


@runtime_checkable
class ModelBuilder(Protocol):
    """A :class:`~seqbench.registry.ModelSpec`'s ``build`` target, called once per run (and once per
    length by ``seqbench bench``) with the model's config dataclass and the task's :class:`TaskInfo`."""

    def __call__(self, config: Any, info: TaskInfo) -> SequenceModel: ...


# ------------------------------------------------------------------ optional capabilities


@runtime_checkable
class GateSchedule(Protocol):
    """A gated model's penalty weight. Called once per training step, after the forward, with the
    step and the task loss where the evaluation scores (:attr:`TaskInfo.eval_scores`; curves:
    ``lambda_loss``); the harness adds ``lambda * gates.mean()`` to the loss and records ``lambda`` in
    the curves and the row."""

    def gate_lambda(self, step: int, task_loss: torch.Tensor) -> float: ...


@runtime_checkable
class GateThreshold(Protocol):
    """The value above which a gate counts as open, read whenever the harness computes ``gate_rate``
    (training curves, evaluation, test, bench). Without it the threshold is 0.5."""

    gate_threshold: float


@runtime_checkable
class GateModes(Protocol):
    """A model that can gate softly (mix everywhere) or hard (skip the compute of closed gates). The
    harness tests it twice: soft, then ``set_gate_mode("hard")`` (columns ``*_hard``), then back to
    "soft"; ``seqbench bench --gate-rate`` sets "hard" on the submodules it forces."""

    def set_gate_mode(self, mode: Literal["soft", "hard"]) -> None: ...


@runtime_checkable
class ForcibleGates(Protocol):
    """A (sub)module whose fraction of open gates can be fixed, for throughput measurements: called by
    ``seqbench bench --gate-rate p`` on every submodule that has it, before the timed steps. Raises
    ``ValueError`` when the configuration cannot force its gates (the harness reports it as a user
    mistake); ``None`` restores the learned gate."""

    def force_gate_rate(self, p: float | None) -> None: ...


@runtime_checkable
class LayerProbes(Protocol):
    """The modules whose outputs are the model's per-layer hidden states (a tuple output is read at its
    first element). Called at each evaluation by ``seqbench run --probe rank``, which refuses a model
    without it before training."""

    def probe_layers(self) -> list[nn.Module]: ...


@runtime_checkable
class KernelReport(Protocol):
    """Which implementation a (sub)module ran, e.g. ``"mamba:cuda"`` (empty when it has not run). Read
    from every submodule after a run or a bench measurement: the row's ``kernels`` column."""

    kernel_path: str


@runtime_checkable
class PositionReadout(Protocol):
    """A token model that can compute its logits at chosen positions only. For token targets the
    harness calls ``read_out_at(tokens, positions)`` instead of the model, with ``positions`` the
    ``(B, T)`` bool mask of the scored targets; it returns what the model's call would, but with logits
    ``full_logits[positions]`` of shape ``(N, C)``, and never runs the output head elsewhere. Sparse
    targets are common (MQAR scores 4 of 64 positions; associative recall's evaluation only the answer)
    and at a vocabulary of 8,192 the head is most of a training step's cost."""

    def read_out_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | ModelOutput: ...


# ------------------------------------------------------------------------------ the task


@runtime_checkable
class TaskData(Protocol):
    """What a :class:`~seqbench.registry.TaskSpec`'s ``build(config, seed, batch_size)`` returns: a
    ``LightningDataModule`` (the trainer takes it as its datamodule) that also describes its batches and
    fingerprints its data. ``seqbench.api.TensorTaskData`` implements it for tensors from a seeded
    generator. The harness checks that a task's data module conforms when it builds it, calls
    ``setup()`` once, then ``info()``; each loader yields ``(tokens, targets)`` batches; the row records
    ``data_fingerprint()``."""

    def setup(self, stage: str | None = None) -> None: ...

    def info(self) -> TaskInfo: ...

    def train_dataloader(self) -> Any: ...

    def val_dataloader(self) -> Any: ...

    def test_dataloader(self) -> Any: ...

    def data_fingerprint(self) -> str: ...


@runtime_checkable
class LengthLimited(Protocol):
    """A model that can run only up to some sequence length (e.g. learned absolute positions)."""

    def max_seq_len(self) -> int | None:
        """The longest sequence the model can take, or None for any length."""
