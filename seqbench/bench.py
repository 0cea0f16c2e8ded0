"""Throughput benchmark: tokens/s, peak memory, FLOPs per token and MFU against sequence length.

For each (model, variant, mode, length) the batch is sized so that every step sees about the same
number of tokens (``tokens_per_step // seq_len`` sequences), so the rows compare the cost of a token
at different lengths. A measurement is a few warm-up steps, then the median of repeated timed steps;
on CUDA each step is bracketed by CUDA events after a synchronisation, on CPU by the wall clock.

Peak memory: on CUDA the caching allocator's peak (``torch.cuda.max_memory_allocated``), on CPU the
process's resident-set high-water mark, reset before each length through ``/proc/self/clear_refs``
where Linux allows it (``mem_kind`` says which one a row holds).

FLOPs are counted, not derived by hand: ``torch.utils.flop_counter.FlopCounterMode`` over one forward
(matmuls, convolutions and attention; elementwise work is not counted, as is usual for MFU), times 3
for a training step (forward + backward). MFU = achieved FLOP/s over the peak FLOP/s of a large
matmul measured in the same process (before every length; the best so far), in the benchmark's dtype.

Precision: ``precisions`` lists Lightning's names, ``32-true`` (fp32) and ``bf16-mixed`` (the forward under
``torch.autocast`` to bfloat16, as Lightning's bf16-mixed does; on CPUs with AMX its matmuls run ~9x faster
than fp32's). The row's ``dtype`` column holds the precision, MFU is against the peak matmul of that dtype,
and :func:`speedups` gives each bf16 row's tokens/s over the fp32 row of the same call.

Every row is written atomically as its own file under ``<results>/bench/``; a length that runs out of
memory or over its time budget is recorded with status ``oom`` / ``timeout`` and the benchmark goes on.
"""

from __future__ import annotations

import datetime as dt
import gc
import resource
import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from seqbench import __version__
from seqbench.capabilities import forcible_gates, gate_modes, gate_threshold, kernels_used
from seqbench.configure.budget import solve_for_budget
from seqbench.configure.config import parse_overrides
from seqbench.configure.options import device_name, git_sha, pick_accelerator
from seqbench.configure.resolve import resolve_model_config
from seqbench.contracts import TaskInfo
from seqbench.errors import UserError
from seqbench.registry import check_preset, load_spec_target, select_variants
from seqbench.results import Status, iter_rows, read_bench, write_bench_row
from seqbench.train.lit import as_output, gate_fraction
from seqbench.train.runner import is_oom

CPU_LENGTHS = (512, 1024, 2048, 4096, 8192)
GPU_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)  # the paper's Fig. 24 range
CPU_TOKENS_PER_STEP = 8192
GPU_TOKENS_PER_STEP = 32768
BENCH_VOCAB = 256  # a byte-level vocabulary: the embedding and readout stay small next to the mixer
# Lightning's precision names -> (the autocast dtype, or None for none; the dtype of the peak matmul)
PRECISIONS = {"32-true": (None, torch.float32), "bf16-mixed": (torch.bfloat16, torch.bfloat16)}


@dataclass(frozen=True)
class BenchOptions:
    models: tuple[str, ...]
    variants: tuple[str, ...] | None = None  # None: each model's first variant
    lengths: tuple[int, ...] | None = None  # None: CPU_LENGTHS or GPU_LENGTHS
    modes: tuple[str, ...] = ("train",)
    preset: str = "default"
    overrides: tuple[str, ...] = ()  # --set model.KEY=VALUE
    tokens_per_step: int | None = None  # None: CPU_TOKENS_PER_STEP or GPU_TOKENS_PER_STEP
    warmup: int = 2
    repeats: int = 5
    timeout_s: float = 300.0  # per (model, mode, length), checked between steps
    gate_rate: float | None = None
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch (None: torch's default)
    results_dir: Path = Path("results")
    params: int | None = None  # --params: each model's width solved for this many parameters
    missing_only: bool = False  # skip what already has an ok row in results_dir (report --run's resume)
    precisions: tuple[str, ...] = ("32-true",)  # keys of PRECISIONS; each is a row of its own


# ------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class BenchModel:
    name: str
    variant: str
    config: Any  # the model's config dataclass, resolved from preset, variant and overrides
    build: Callable


def resolve_models(registries, options: BenchOptions, seq_len: int | None = None,
                   note: Callable[[str], None] | None = None) -> list[BenchModel]:
    """(model, variant) pairs with their resolved configs; unknown names or variants raise UserError.

    With ``options.params`` each width is solved on the synthetic task at ``seq_len`` (the shortest
    length: learned positions make a model grow with its length); ``note`` hears a second size moved and a
    missed tolerance."""
    check_preset(options.preset)
    sets = parse_overrides(list(options.overrides))
    if sets["task"] or sets["train"]:
        raise UserError("bench takes only model.KEY=VALUE overrides: its data are synthetic and its steps are "
                        "set by --warmup/--repeats")
    pairs = select_variants([registries.models.get(name) for name in options.models], options.variants)
    models = []
    for spec, variant in pairs:
        config = resolve_model_config(spec, options.preset, variant, sets["model"])
        if options.params is not None:
            config = solve_for_budget(spec, config, bench_info(seq_len or min(CPU_LENGTHS)), options.params,
                                      fixed=set(sets["model"]), note=note)
        models.append(BenchModel(spec.name, variant, config, load_spec_target(spec, "build")))
    return models


def bench_info(seq_len: int):
    """A synthetic causal next-token task of length ``seq_len``: what a model needs to be built."""
    return TaskInfo(name="bench", vocab_size=BENCH_VOCAB, seq_len=seq_len, num_classes=BENCH_VOCAB,
                    target="token", causal=True)


def force_gates(module, rate: float) -> None:
    """Fix the gate rate of every controller; models with gate modes run "hard", where an ungated
    unit really skips its attention (a soft gate would still compute attention everywhere)."""
    for controller in forcible_gates(module):
        controller.force_gate_rate(rate)
        modes = gate_modes(controller)
        if modes is not None:
            modes.set_gate_mode("hard")


def batch_size_for(seq_len: int, tokens_per_step: int) -> int:
    return max(1, tokens_per_step // seq_len)


# ---------------------------------------------------------------------------- measurement


def measure_peak_flops(device, dtype=None, size: int | None = None, repeats: int = 3) -> float:
    """FLOP/s of the best of ``repeats`` square matmuls: the device's attainable peak for MFU."""
    dtype = dtype or torch.float32
    size = size or (8192 if device.type == "cuda" else 2048)

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        seconds = _timed(device, lambda: torch.mm(a, b))
        if i > 0:  # the first call pays for allocation and kernel selection
            best = min(best, seconds)
    return 2 * size**3 / best


def _timed(device, fn: Callable[[], Any]) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved_seconds(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int, device=None
                        ) -> dict[str, list[float]]:
    """Seconds per call of each function: every repeat calls them all in turn, so drift in the machine's
    speed hits each alike; ``warmup`` untimed rounds first. ``device``: a CUDA device to time with events."""
    device = device if device is not None else torch.device("cpu")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            seconds = _timed(device, fn)
            if i >= warmup:
                times[name].append(seconds)
    return times


class PeakMemory:
    """Peak memory of one measurement: the CUDA allocator's, or the process's RSS high-water mark."""

    def __init__(self, device):
        self.device = device
        self.kind = "cuda_allocator" if device.type == "cuda" else "process_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # Linux >= 4.0: writing 5 resets VmHWM, so each length gets its own peak
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "process_rss_cumulative"  # the peak since the process started

    def read(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        self.kind = "process_rss_cumulative"
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(module, tokens) -> float:
    """FLOPs of one forward on ``tokens`` as counted by torch's FlopCounterMode.

    Torch counts SDPA's CUDA kernels but not the CPU flash kernel that SDPA picks on CPU; it is added
    here with torch's own SDPA formula (full, non-causal attention, as torch counts the CUDA kernels).
    """
    custom = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        custom[cpu_flash] = _cpu_flash_attention_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with torch.no_grad(), counter:
        module(tokens)
    return float(counter.get_total_flops())


class StepRunner:
    """One benchmark step of a model: a training step (forward, CE, backward, AdamW) or a forward."""

    def __init__(self, module, mode: str, tokens, targets, autocast_dtype: torch.dtype | None = None):
        self.module, self.mode, self.tokens, self.targets = module, mode, tokens, targets
        self.autocast_dtype = autocast_dtype
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4) if mode == "train" else None
        self.threshold = gate_threshold(module)
        self.gate_fractions: list[float] = []

    def _forward(self):
        """The module's forward, under autocast for a mixed precision (Lightning's bf16-mixed does the same)."""
        if self.autocast_dtype is None:
            return as_output(self.module(self.tokens))
        with torch.autocast(self.tokens.device.type, dtype=self.autocast_dtype):
            return as_output(self.module(self.tokens))

    def __call__(self) -> None:
        if self.mode == "train":
            out = self._forward()
            loss = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), self.targets.reshape(-1))
            if out.gates is not None:
                loss = loss + 0.01 * out.gates.float().mean()  # the gate penalty is part of a TGN step
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                out = self._forward()
        if out.gates is not None:
            self.gate_fractions.append(float(gate_fraction(out.gates.detach(), self.threshold)))


def measure(bench_model: BenchModel, mode: str, seq_len: int, options: BenchOptions, device,
            peak_flops: float, precision: str = "32-true") -> dict[str, Any]:
    """One row: build the model for ``seq_len``, warm up, time ``repeats`` steps, count FLOPs."""
    tokens_per_step = options.tokens_per_step or (GPU_TOKENS_PER_STEP if device.type == "cuda"
                                                  else CPU_TOKENS_PER_STEP)
    batch = batch_size_for(seq_len, tokens_per_step)
    row: dict[str, Any] = {"model": bench_model.name, "variant": bench_model.variant, "mode": mode,
                           "seq_len": seq_len, "batch_size": batch, "peak_flops": peak_flops,
                           "forced_gate_rate": options.gate_rate}
    memory = PeakMemory(device)
    memory.reset()
    deadline = time.perf_counter() + options.timeout_s
    module = step = None
    try:
        torch.manual_seed(0)
        module = bench_model.build(bench_model.config, bench_info(seq_len)).to(device)
        module.train(mode == "train")
        row["n_params"] = sum(p.numel() for p in module.parameters())
        if options.gate_rate is not None:
            force_gates(module, options.gate_rate)
        generator = torch.Generator().manual_seed(seq_len)
        tokens = torch.randint(0, BENCH_VOCAB, (batch, seq_len), generator=generator).to(device)  # (B, T)
        targets = torch.randint(0, BENCH_VOCAB, (batch, seq_len), generator=generator).to(device)  # (B, T)
        step = StepRunner(module, mode, tokens, targets, PRECISIONS[precision][0])
        times: list[float] = []
        for i in range(options.warmup + options.repeats):
            seconds = _timed(device, step)
            if i >= options.warmup:
                times.append(seconds)
            if time.perf_counter() > deadline and i + 1 < options.warmup + options.repeats:
                row.update(status=Status.TIMEOUT, error=f"over the {options.timeout_s:g} s budget after {i + 1} steps "
                                                   f"(last step {seconds:.2f} s)")
                break
        else:
            row["status"] = Status.OK
        row["kernels"] = kernels_used(module)  # the paths the timed steps ran (known only once they ran)
        row["peak_mem_bytes"] = memory.read()
        if row["status"] == Status.OK:
            median = statistics.median(times)
            row.update(step_time_s=median, timed_steps=len(times), tokens_per_sec=batch * seq_len / median)
            forward_flops = count_flops(module, tokens)
            row["flops_per_token"] = forward_flops * (3 if mode == "train" else 1) / (batch * seq_len)
            row["mfu"] = row["flops_per_token"] * row["tokens_per_sec"] / peak_flops if peak_flops else None
        if options.gate_rate is not None:
            # The gates a model returns may still be its learned values while the override decides
            # the compute (the chunked TGN does this), so the forced rate is the one on record.
            row["gate_rate_source"] = "forced"
        elif step.gate_fractions:
            row["gate_rate"] = statistics.fmean(step.gate_fractions)
            row["gate_rate_source"] = "learned"
    except Exception as exc:  # one bad length must not end the benchmark
        row["status"] = Status.OOM if is_oom(exc) else Status.FAILED
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        row["peak_mem_bytes"] = memory.read()
    finally:
        del module, step
        if device.type == "cuda":  # hand the cached blocks back so the next length starts clean
            gc.collect()
            torch.cuda.empty_cache()
    row["mem_kind"] = memory.kind
    return row


# ------------------------------------------------------------------------------- the loop


def run_bench(registries, options: BenchOptions, on_row: Callable[[dict[str, Any]], None] | None = None,
              note: Callable[[str], None] | None = None) -> Iterable[dict[str, Any]]:
    """Measure every (model, variant, mode, length); write and yield each row as it is done."""
    for mode in options.modes:
        if mode not in ("train", "infer"):
            raise UserError(f"unknown --mode {mode!r}: choose train or infer")
    if options.gate_rate is not None and not 0.0 <= options.gate_rate <= 1.0:
        raise UserError(f"--gate-rate must be a fraction in [0, 1], got {options.gate_rate}")
    if options.warmup < 0 or options.repeats < 1:
        raise UserError("--warmup must be >= 0 and --repeats >= 1")
    unknown = [p for p in options.precisions if p not in PRECISIONS]
    if unknown or not options.precisions:
        raise UserError(f"--precision {','.join(options.precisions)!r}: choose from {', '.join(PRECISIONS)} "
                        "(comma-separated for several)")
    if options.tokens_per_step is not None and options.tokens_per_step < 1:
        raise UserError(f"--tokens-per-step must be >= 1, got {options.tokens_per_step}")
    if not options.timeout_s >= 0:  # also refuses nan; inf means no time limit
        raise UserError(f"--timeout must be a number of seconds >= 0, got {options.timeout_s}")
    device = torch.device(pick_accelerator(options.device))
    if options.threads is not None:
        if options.threads < 1:
            raise UserError(f"--threads must be >= 1, got {options.threads}")
        # On a shared CPU fewer threads can be much faster: a recurrence's many small ops each end in a
        # thread barrier, and oversubscribed barriers stall (measured 25x on a GRU here).
        torch.set_num_threads(options.threads)
    lengths = options.lengths or (GPU_LENGTHS if device.type == "cuda" else CPU_LENGTHS)
    if any(length <= 0 for length in lengths):
        raise UserError(f"--lengths must be positive integers, got {', '.join(map(str, lengths))}")
    models = resolve_models(registries, options, seq_len=min(lengths), note=note)
    if options.gate_rate is not None:
        lacking = []
        for m in models:
            probe = m.build(m.config, bench_info(min(lengths)))
            if not forcible_gates(probe):
                lacking.append(m.name)
                continue
            try:
                force_gates(probe, options.gate_rate)
            except ValueError as exc:  # e.g. a TGN variant whose gate is per token, not per chunk
                raise UserError(f"--gate-rate does not apply to {m.name}/{m.variant}: {exc}") from None
        if lacking:
            raise UserError(f"--gate-rate needs a model whose gates can be fixed (force_gate_rate), but "
                            f"{', '.join(lacking)} has none; bench those models in a separate call without "
                            "--gate-rate (rows from both calls share --results)")
    if options.missing_only and options.overrides:
        raise UserError("--missing-only cannot tell rows apart by --set overrides (bench rows do not record "
                        "them): run without --missing-only, or into a --results folder of their own")
    peak = {precision: 0.0 for precision in options.precisions}
    common = {"preset": options.preset, "device": device_name(device.type), "param_budget": options.params,
              "seqbench_version": __version__, "torch_version": torch.__version__, "git_sha": git_sha()}
    done = _measured(options.results_dir, common) if options.missing_only else set()
    for bench_model in models:
        for mode in options.modes:
            for seq_len in sorted(lengths):
                for precision in options.precisions:  # innermost: fp32 and bf16 of one length run side by side
                    key = _bench_key(bench_model.name, bench_model.variant, mode, seq_len, options.gate_rate,
                                     precision)
                    if key in done:
                        if note is not None:
                            shown = "" if precision == "32-true" else f" {precision}"
                            note(f"{bench_model.name}/{bench_model.variant} {mode} L={seq_len}{shown}: already "
                                 f"measured in {options.results_dir} (--missing-only), skipped")
                        continue
                    # Re-measured before every length and the best kept: on a shared machine one throttled
                    # measurement would otherwise set a low peak (and an MFU above 100%) for the whole run.
                    peak[precision] = max(peak[precision], measure_peak_flops(device, PRECISIONS[precision][1]))
                    started = dt.datetime.now(dt.timezone.utc)
                    row = {**common, "dtype": _dtype_name(precision),
                           **measure(bench_model, mode, seq_len, options, device, peak[precision], precision),
                           "started_at": started,
                           "bench_id": f"{started:%Y%m%d-%H%M%S}-{bench_model.name}-{bench_model.variant}-{mode}"
                                       f"-L{seq_len}{'' if precision == '32-true' else '-' + precision}"
                                       f"-{uuid.uuid4().hex[:6]}"}
                    row["path"] = str(write_bench_row(options.results_dir, row))
                    if on_row is not None:
                        on_row(row)
                    yield row


def _dtype_name(precision: str) -> str:
    """The bench row's ``dtype``: "float32" for 32-true (as rows have always said), else the precision's name."""
    return "float32" if precision == "32-true" else precision


def speedups(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Each ok mixed-precision row's tokens/s over the ok float32 row of the same (model, variant, mode,
    length, forced gate rate), keyed by its bench_id; rows without such a partner are left out."""
    rows = [r for r in rows if r.get("status") == Status.OK and r.get("tokens_per_sec")]
    fp32 = {_bench_key(r["model"], r["variant"], r["mode"], r["seq_len"], r.get("forced_gate_rate")): r
            for r in rows if r.get("dtype") == "float32"}
    ratios = {}
    for r in rows:
        partner = fp32.get(_bench_key(r["model"], r["variant"], r["mode"], r["seq_len"], r.get("forced_gate_rate")))
        if r.get("dtype") != "float32" and partner is not None:
            ratios[r["bench_id"]] = r["tokens_per_sec"] / partner["tokens_per_sec"]
    return ratios


def _bench_key(model: str, variant: str, mode: str, seq_len: int, forced_gate_rate: float | None,
               precision: str = "32-true") -> tuple:
    return (model, variant, mode, seq_len, None if forced_gate_rate is None else round(forced_gate_rate, 9),
            _dtype_name(precision))


def _measured(results_dir: Path, common: dict[str, Any]) -> set[tuple]:
    """What ``results_dir`` already holds an ok row of under the same preset, device (with its threads) and
    parameter budget: ``--missing-only`` skips these, so an interrupted ``report --run`` re-times nothing."""
    return {(*_bench_key(r["model"], r["variant"], r["mode"], r["seq_len"], r.get("forced_gate_rate"))[:-1],
             r.get("dtype") or "float32")
            for r in iter_rows(read_bench(results_dir))
            if r["status"] == Status.OK and all(r.get(k) == common[k] for k in ("preset", "device", "param_budget"))}
