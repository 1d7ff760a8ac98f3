"""Two CPU processes under torchrun (gloo): one model, written once, by rank 0."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, make_sequence_folders, tiny_argv
from utils.checkpoint import load_checkpoint, strip_module_prefix

WRAPPER = """
import os, sys, torch
from engine.train import build_arg_parser, train
out = train(build_arg_parser().parse_args(sys.argv[2:]))
torch.save(out["model"].state_dict(), os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    train_dir = make_sequence_folders(tmp_path / "train", 1, 6)
    log_dir = tmp_path / "log"
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    # 12 clips / (2 processes x batch 2) = 3 steps per process.
    argv = tiny_argv(train_dir, None, log_dir, patches_per_epoch=12)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(wrapper), str(tmp_path), *argv],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=SUBPROCESS_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    ckpt = load_checkpoint(log_dir / "ckpt_e1.pth")
    saved = strip_module_prefix(ckpt["state_dict"])
    assert int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == 3
    assert all(torch.equal(saved[k], rank0[k]) for k in rank0)
    assert "3 iterations/epoch" in proc.stdout and "x2" in proc.stdout
    assert proc.stdout.count("training bdc_2_unify") == 1  # rank 0 alone logs
