"""CUDA paths: every registered model on the GPU against itself on the CPU (``-m gpu``), and the script
that runs every GPU check in one call (benchmarks/gpu_check.sh), which must refuse cleanly without CUDA."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqbench.api import ModelOutput
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import build_registries
from seqbench.train.runner import build_data_and_model

GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
_REGISTRIES = build_registries()
# each model variant on the first task it can read (every model has a token or a graph task)
MODELS = [(m.name, v, next(t.name for t in _REGISTRIES.tasks if m.inputs & t.views))
          for m in _REGISTRIES.models for v in m.variants]


def _logits(out) -> torch.Tensor:
    return out.logits if isinstance(out, ModelOutput) else out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model, variant, task", MODELS, ids=[f"{m}-{v}-{t}" for m, v, t in MODELS])
def test_model_on_cuda_matches_itself_on_cpu(model, variant, task, smoke_overrides):
    config = resolve_run_config(_REGISTRIES, model, task, variant=variant, preset="smoke",
                                overrides=smoke_overrides(task))
    data, info, module = build_data_and_model(_REGISTRIES, config)
    tokens, targets = next(iter(data.train_dataloader()))
    on_gpu = copy.deepcopy(module).cuda()
    module.eval()
    on_gpu.eval()
    with torch.no_grad():
        expected, actual = _logits(module(tokens)), _logits(on_gpu(tokens.cuda()))
    # mamba-ssm and cuDNN accumulate in other orders, and may use TF32: a loose bound, not bitwise
    torch.testing.assert_close(actual.cpu(), expected, atol=2e-2, rtol=2e-2)
    on_gpu.train()
    out = on_gpu(tokens.cuda())
    loss = torch.nn.functional.cross_entropy(_logits(out).reshape(-1, info.num_classes), targets.cuda().reshape(-1),
                                             ignore_index=info.ignore_index)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in on_gpu.parameters() if p.grad is not None)


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda(tmp_path):
    summary = tmp_path / "out" / "gpu_summary.md"
    result = subprocess.run(["bash", str(GPU_CHECK), str(summary)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHON": sys.executable, "VENV": str(tmp_path / "venv")})
    assert result.returncode == 3
    assert "no CUDA device" in result.stderr and "nothing was run" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "venv").exists()
