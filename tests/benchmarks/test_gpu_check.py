"""benchmarks/gpu_check.sh in its dry mode: every step runs, tiny and on the CPU, so the GPU
script cannot rot between the sessions that have a GPU."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV

STEPS = ["GPU-marked tests", "CuPy kernel self-check (which path each kernel uses)", "model speed (float32 and bf16)",
         "bf16 PSNR change", "training-step speed",
         "--amp training", "--amp training losses are finite", "2-process NCCL DDP training",
         "peak memory, one pass and bounded"]


@pytest.mark.slow
def test_gpu_check_dry_mode_runs_every_step(tmp_path):
    out = tmp_path / "gpu_check.txt"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry", str(out)], cwd=REPO_ROOT,
                          env={**SUBPROCESS_ENV, "PY": sys.executable}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    for name in STEPS:
        assert f"=== {name}" in text, name
    assert "FAILED" not in text and "all GPU checks passed" in text
    assert "train step ours/official:" in text and "output sums differ by" in text


def test_gpu_check_refuses_to_run_without_a_gpu_and_bad_arguments(tmp_path):
    env = {**SUBPROCESS_ENV, "PY": sys.executable}
    bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown argument '--fast'" in bad.stderr
    import torch
    if not torch.cuda.is_available():
        real = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert real.returncode == 2 and "no CUDA device here" in real.stderr
