"""benchmarks/gpu_recipe.sh in its dry mode: train, export and benchmark run tiny on the CPU, so the
default model's GPU recipe is ready whenever a GPU machine is lent."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV
from utils.checkpoint import load_checkpoint


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "benchmarks/gpu_recipe.sh", *args], cwd=REPO_ROOT,
                          env={**SUBPROCESS_ENV, "PY": sys.executable}, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_gpu_recipe_dry_mode_trains_exports_and_benchmarks(tmp_path):
    proc = _run(str(tmp_path / "out"), "--dry")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    weights = load_checkpoint(tmp_path / "out" / "stbn_blind_gpu.pth")
    assert "optimizer" not in weights and weights["config"]["num_channels"] == 8
    assert not any(k.startswith("module.pwcnet.") for k in weights["state_dict"])  # DIS flow: no PWC-Net
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert report["settings"]["model_file"] == str(tmp_path / "out" / "stbn_blind_gpu.pth")
    methods = {row["method"] for row in report["rows"]}
    assert "STBN default model, sigma + prior scale auto" in methods and any("NLM" in m for m in methods)
    assert all("chroma_error" in row for row in report["rows"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_recipe_refuses_without_a_gpu_and_with_bad_arguments(tmp_path):
    for args, words in (([str(tmp_path / "o")], "no CUDA device here"), ([], "usage"),
                        ([str(tmp_path / "o"), "--minutes", "soon"], "--minutes needs a number"),
                        ([str(tmp_path / "o"), "--fast"], "unknown argument '--fast'")):
        proc = _run(*args)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
