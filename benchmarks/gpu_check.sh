#!/usr/bin/env bash
# Every CUDA path of seqbench in one call of at most 8 minutes (BUDGET_S, default 450, plus each
# step's 10 s grace to die): the GPU tests (`pytest -m gpu`), then the GPU throughput bench
# (transformer and mamba; the chunked TGN at a forced 15% gate rate; 1K-32K tokens), then a markdown
# summary with the test counts and the throughput table.
#
#   benchmarks/gpu_check.sh [SUMMARY]    default SUMMARY: $OUT/gpu_summary.md if $OUT is set,
#                                        else results/gpu-check/gpu_summary.md
# Environment:
#   PYTHON    the interpreter whose torch has CUDA (default python3); a venv on top of it
#             (--system-site-packages, at VENV, default /tmp/seqbench-gpu-venv) gets seqbench itself;
#             an existing VENV that already imports this checkout's seqbench is used as it is
#   WHEELS    a folder of prebuilt mamba-ssm / causal-conv1d wheels for that torch; without it they are
#             tried from the package index (binary wheels only: a source build takes far longer than
#             the budget) and skipped, with the reason logged, when that fails
#   PRESET    the bench's model sizes (default paper); LENGTHS (default 1024,...,32768)
#   DEVICE    cuda (default); cpu only to try the script itself on a machine without a GPU
# Exit: 0 all tests passed and every bench row ok/oom/timeout; 1 otherwise; 3 no CUDA device.
# On a machine lent for a single command whose files under $OUT come back, that command is just
# `bash benchmarks/gpu_check.sh` (run from the repository root): the summary and log land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUDGET_S=${BUDGET_S:-450}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-/tmp/seqbench-gpu-venv}
PRESET=${PRESET:-paper}
LENGTHS=${LENGTHS:-1024,2048,4096,8192,16384,32768}
DEVICE=${DEVICE:-cuda}
if [[ -n "${OUT:-}" ]]; then SUMMARY=${1:-$OUT/gpu_summary.md}; else SUMMARY=${1:-results/gpu-check/gpu_summary.md}; fi
START=$SECONDS

log() { echo "gpu_check: $*" | tee -a "$LOG" >&2; }
# seconds left for a step: at most $1, and always 30 s kept back for the summary
left() { local rest=$((BUDGET_S - (SECONDS - START) - 30)); ((rest < $1)) && echo $((rest > 0 ? rest : 1)) || echo "$1"; }
# step NAME CAP COMMAND...: run under `timeout`, output to the log; returns the command's status (124: timed out)
step() {
    local name=$1 cap; cap=$(left "$2"); shift 2
    log "$name (at most ${cap}s): $*"
    timeout --kill-after=10 "$cap" "$@" >>"$LOG" 2>&1
    local status=$?
    ((status == 124)) && log "$name: timed out after ${cap}s"
    return $status
}

if [[ $DEVICE == cuda ]] &&
   ! timeout 60 "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to $PYTHON's torch: run this on a CUDA machine (or set PYTHON" \
         "to the interpreter with the CUDA build of torch); nothing was run" >&2
    exit 3
fi
WORK=$(mktemp -d /tmp/seqbench-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT  # what matters is copied beside the summary
LOG=$WORK/gpu_check.log
mkdir -p "$(dirname "$SUMMARY")"

PY=$VENV/bin/python
this_checkout="import pathlib, sys, seqbench; sys.exit(pathlib.Path(seqbench.__file__).resolve().parents[1] != pathlib.Path.cwd().resolve())"
if ! "$PY" -c "$this_checkout" >>"$LOG" 2>&1; then
    step "venv" 90 "$PYTHON" -m venv --system-site-packages "$VENV" &&
        step "install seqbench" 90 "$PY" -m pip install -q --no-deps --no-build-isolation -e . ||
        { log "installing seqbench failed: see $LOG"; cat "$LOG" >&2; exit 1; }
fi

# the [cuda] extra's kernels: they compile against this torch, hence --no-build-isolation
KERNELS="mamba-ssm causal-conv1d"
if [[ -n "${WHEELS:-}" ]]; then
    step "cuda kernels from $WHEELS" 120 "$PY" -m pip install -q --no-build-isolation --no-index \
        --find-links "$WHEELS" $KERNELS
else
    step "cuda kernels from the index" 120 "$PY" -m pip install -q --no-build-isolation --only-binary=:all: \
        --retries 0 --timeout 15 $KERNELS
fi
if "$PY" -c "import mamba_ssm.ops.selective_scan_interface" >>"$LOG" 2>&1; then
    KERNEL_STATE="mamba-ssm imported"
else
    KERNEL_STATE="mamba-ssm not available (no wheel for this torch could be installed; see the log): the tests that need it skip"
fi
log "$KERNEL_STATE"

step "pytest -m gpu" 150 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs --junitxml="$WORK/gpu-tests.xml" tests
TESTS_STATUS=$?

# --gate-rate applies only to models whose gates can be fixed: the chunked TGN alone, then the others
step "bench tgn chunked, forced 15%" 150 "$PY" -m seqbench.cli bench --models tgn --variant chunked \
    --gate-rate 0.15 --lengths "$LENGTHS" --device "$DEVICE" --preset "$PRESET" --timeout 40 --results "$WORK/results"
step "bench transformer, mamba" 200 "$PY" -m seqbench.cli bench --models transformer,mamba \
    --lengths "$LENGTHS" --device "$DEVICE" --preset "$PRESET" --timeout 40 --results "$WORK/results"

timeout 30 "$PY" - "$WORK" "$SUMMARY" "$KERNEL_STATE" "$TESTS_STATUS" "$((SECONDS - START))" <<'PYTHON'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from seqbench.results import read_bench

work, summary, kernel_state, tests_status, elapsed = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (DEVICE=cpu)"
lines = [f"# seqbench GPU check: {device}", "",
         f"torch {torch.__version__}, CUDA {torch.version.cuda}; {kernel_state}; {elapsed} s", ""]
junit = work / "gpu-tests.xml"
failed = 1
if junit.exists():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    failed = failures + errors
    lines += [f"## pytest -m gpu: {tests - failed - skipped} passed, {failures} failed, {errors} errors, "
              f"{skipped} skipped", ""]
    for case in suite.iter("testcase"):
        for outcome in ("failure", "error", "skipped"):
            element = case.find(outcome)
            if element is not None:
                message = next(iter((element.get("message") or "").splitlines()), "")
                lines.append(f"- {outcome}: {case.get('name')}: {message}")
else:
    lines += [f"## pytest -m gpu: no report (exit status {tests_status}; see the log)"]
rows = read_bench(work / "results")
rows = [] if rows is None else rows.to_pylist()
lines += ["", "## Throughput (train steps, tokens/s; forced gate rate where given)", ""]
lengths = sorted({r["seq_len"] for r in rows})
lines += ["| model | variant | gate | " + " | ".join(str(n) for n in lengths) + " |",
          "|---|---|---|" + "---|" * len(lengths)]
for key in sorted({(r["model"], r["variant"], r["forced_gate_rate"]) for r in rows}, key=str):
    by_length = {r["seq_len"]: r for r in rows if (r["model"], r["variant"], r["forced_gate_rate"]) == key}
    cells = [f"{by_length[n]['tokens_per_sec']:,.0f}" if n in by_length and by_length[n]["status"] == "ok"
             else (by_length[n]["status"] if n in by_length else "—") for n in lengths]
    lines.append(f"| {key[0]} | {key[1]} | {'—' if key[2] is None else f'{key[2]:.0%}'} | " + " | ".join(cells) + " |")
bad = [r for r in rows if r["status"] not in ("ok", "oom", "timeout")]
lines += ["", f"{len(rows)} bench rows, {len(bad)} failed"]
lines += [f"- failed: {r['model']}/{r['variant']} L={r['seq_len']}: {(r['error'] or '').strip()[-300:]}"
          for r in bad]
summary.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if failed or bad or not rows else 0)
PYTHON
STATUS=$?
cp "$LOG" "$(dirname "$SUMMARY")/gpu_check.log" 2>/dev/null
log "summary in $SUMMARY, log beside it; $((SECONDS - START)) s"
exit $STATUS
