"""Tiny synthetic frame folders and a tiny training configuration for the engine tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
# Subprocesses run single-threaded: on a loaded 2-core machine, OpenMP threads that spin-wait for
# each other made these tiny trainings up to 20x slower.
# The shell scripts (main.sh, test.sh) run with this interpreter rather than set up a .venv.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "STBN_PYTHON": sys.executable}


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread (see SUBPROCESS_ENV), restoring the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_sequence_folders(root: Path, num_sequences: int = 2, num_frames: int = 8,
                          height: int = 40, width: int = 48, seed: int = 0) -> Path:
    """Write `root/seq{k}/{t:05d}.png`: a smooth random texture drifting one pixel per frame."""
    rng = np.random.default_rng(seed)
    for k in range(num_sequences):
        coarse = rng.uniform(0.15, 0.85, size=(height // 8 + 2, (width + num_frames) // 8 + 2, 3))
        texture = np.kron(coarse, np.ones((8, 8, 1)))
        folder = root / f"seq{k}"
        folder.mkdir(parents=True)
        for t in range(num_frames):
            frame = texture[:height, t:t + width]
            iio.imwrite(folder / f"{t:05d}.png", np.round(frame * 255).astype(np.uint8))
    return root


def tiny_argv(train_dir: Path, val_dir: Path | None, log_dir: Path, **overrides) -> list[str]:
    """Command-line arguments of a training that takes well under a second per epoch."""
    options = {"num_channels": 8, "num_resblocks": 2, "train_length": 3, "batch_size": 2,
               "patch_size": 32, "patches_per_epoch": 20, "epochs": 1, "flow": "zero",
               "num_workers": 0, "print_every": 5, "noise_ival": "30 30", "val_max_frames": 4,
               "device": "cpu", "milestones": "100"}
    options.update(overrides)
    argv = ["--trainset_dir", str(train_dir), "--log_dir", str(log_dir)]
    if val_dir is not None:
        argv += ["--valset_dir", str(val_dir)]
    for name, value in options.items():
        argv += [f"--{name}", *str(value).split()]
    return argv
