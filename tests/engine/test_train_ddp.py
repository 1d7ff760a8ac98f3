"""Two CPU processes under torchrun (gloo): one model, written once, by rank 0."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine.inference.loading import strip_module_prefix
from engine.train.setup import seed_epoch
from models import StbnConfig, build_model
from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, make_sequence_folders, tiny_argv
from utils.checkpoint import load_checkpoint

WRAPPER = """
import os, sys, torch
from engine.train.loop import build_arg_parser, train
out = train(build_arg_parser().parse_args(sys.argv[2:]))
torch.save(out["model"].state_dict(), os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--model", "bdc_flow", "--teacher", "dis", "--flow", "zero",
                                        "--distill_start", "0"]], ids=["denoiser", "distillation"])
def test_two_process_gloo_training(tmp_path, extra):
    """Both ranks end with identical weights, the distillation student included (its gradients are
    averaged outside DDP, which only manages the denoiser)."""
    train_dir = make_sequence_folders(tmp_path / "train", 1, 6)
    log_dir = tmp_path / "log"
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    # 12 clips / (2 processes x batch 2) = 3 steps per process.
    argv = tiny_argv(train_dir, None, log_dir, patches_per_epoch=12) + extra
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(wrapper), str(tmp_path), *argv],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=SUBPROCESS_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    if extra:  # the student learned (it left its initial weights), on both ranks alike
        seed_epoch(0, 0, 0)
        initial = build_model(StbnConfig.from_dict(load_checkpoint(log_dir / "ckpt_e1.pth")["config"])).state_dict()
        student = [k for k in rank0 if k.startswith("pwcnet.")]
        assert student and any(not torch.equal(rank0[k], initial[k]) for k in student)
    ckpt = load_checkpoint(log_dir / "ckpt_e1.pth")
    saved = strip_module_prefix(ckpt["state_dict"])
    assert int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == 3
    # The distillation's student is trained and kept; a zero-flow run's PWC-Net is unused and not stored.
    assert set(saved) == {k for k in rank0 if extra or not k.startswith("pwcnet.")}
    assert all(torch.equal(saved[k], rank0[k]) for k in saved)
    assert "3 iterations/epoch" in proc.stdout and "x2" in proc.stdout
    assert proc.stdout.count("training ") == 1  # rank 0 alone logs
