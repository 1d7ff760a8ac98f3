"""STBN rows of the quality benchmark: a small STBN trained on a built-in clip for a fixed CPU
budget, evaluated on the clip's held-out frames, as is and fine-tuned on the noisy clip itself.

Training goes through the documented CLI (`sRGB_train_bsn.py --builtin CLIP`), one epoch per call:
each rerun with `--epochs N+1` resumes from the newest checkpoint, so the budget is honoured at
epoch granularity (no epoch starts that is expected to end past it) and every checkpoint is a
complete one. Evaluation and fine-tuning use the library functions behind `sRGB_test.py` and
`denoise.py --finetune` (`engine.inference.loading`, `engine.inference.sequence`, `engine.train.finetune`) so that the
network sees exactly the same unclipped noisy tensor as the other methods.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.classical import to_uint8
from benchmarks.common import REPO_ROOT
from benchmarks.scoring import to_tchw, to_thwc
from engine.inference.anchor import anchor_low_frequencies
from engine.inference.loading import load_denoiser
from engine.inference.prior_scale import fit_prior_scale
from engine.inference.sequence import denoise_sequence
from engine.train.finetune import finetune_on_video
from utils.checkpoint import latest_checkpoint
from utils.gaussian import PriorScale

# The learning rate stays constant: the official milestones (epochs 2, 4, 6, 8) assume 32000-clip
# epochs, far longer than the short budget epochs here.
NO_DECAY_MILESTONE = 10 ** 6


@dataclass(frozen=True)
class SmallSTBN:
    """The small configuration trained on the CPU: narrow, shallow, small short clips, so that a
    CPU step takes seconds (the official 64-channel, 8x96x96 x4 step takes minutes there)."""
    num_channels: int = 16
    num_resblocks: int = 2
    patch_size: int = 64
    train_length: int = 4
    batch_size: int = 2
    clips_per_epoch: int = 8


def train_within_budget(clip: str, minutes: float, log_dir: Path, config: SmallSTBN) -> dict:
    """Train on `clip`'s training frames until the budget is spent; returns the checkpoint path,
    epochs and seconds. At least one epoch runs, whatever the budget. A failing training run
    raises `RuntimeError` with its last stderr line."""
    budget = minutes * 60.0
    start = time.perf_counter()
    epoch, last_epoch_seconds = 0, 0.0
    while epoch == 0 or time.perf_counter() - start + last_epoch_seconds <= budget:
        epoch += 1
        epoch_start = time.perf_counter()
        command = [sys.executable, "sRGB_train_bsn.py", "--builtin", clip, "--epochs", str(epoch),
                   "--milestones", str(NO_DECAY_MILESTONE), "--num_channels", str(config.num_channels),
                   "--num_resblocks", str(config.num_resblocks), "--patch_size", str(config.patch_size),
                   "--train_length", str(config.train_length), "--batch_size", str(config.batch_size),
                   "--patches_per_epoch", str(config.clips_per_epoch), "--val_max_frames", "2",
                   "--print_every", str(NO_DECAY_MILESTONE), "--num_workers", "0", "--device", "cpu",
                   "--log_dir", str(log_dir)]
        result = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"sRGB_train_bsn.py failed at epoch {epoch} (exit {result.returncode}): {last}")
        last_epoch_seconds = time.perf_counter() - epoch_start
    return {"checkpoint": latest_checkpoint(log_dir), "epochs": epoch,
            "clips_seen": epoch * config.clips_per_epoch, "seconds": time.perf_counter() - start}


def load_small_stbn(checkpoint: Path, config: SmallSTBN) -> torch.nn.Module:
    """The trained network on the CPU in eval mode (its checkpoint records the flow it used)."""
    model, _ = load_denoiser(checkpoint, torch.device("cpu"), num_resblocks=config.num_resblocks,
                             num_channels=config.num_channels)
    return model


def stbn_denoise(model: torch.nn.Module, noisy: np.ndarray, sigma: float,
                 prior_scale: PriorScale | None = 1.0) -> np.ndarray:
    """Posterior mean of a (T,H,W,3) noisy clip; `sigma` on [0, 1]; `prior_scale` None = fitted
    to the clip (engine/inference/prior_scale.py), 1 = the official posterior."""
    seqn = to_tchw(noisy)
    if prior_scale is None:
        prior_scale = fit_prior_scale(model, seqn, sigma)
    return to_thwc(denoise_sequence(model, seqn, sigma, prior_scale=prior_scale))


def anchored(denoised: np.ndarray, noisy: np.ndarray, blur_px: float, sigma: float) -> np.ndarray:
    """`denoised` (T,H,W,3) after denoise.py's low-frequency anchoring to the noisy clip as a user's
    8-bit video holds it (clipped and rounded), `sigma` on [0, 1] the level denoise.py estimated."""
    outputs, stored = to_tchw(denoised), to_tchw(to_uint8(noisy).astype(np.float32) / 255.0)
    return to_thwc(torch.stack([anchor_low_frequencies(d, n, blur_px, sigma) for d, n in zip(outputs, stored)]))


def stbn_finetune_denoise(model: torch.nn.Module, noisy: np.ndarray, sigma: float, iterations: int,
                          config: SmallSTBN, prior_scale: PriorScale | None = 1.0) -> np.ndarray:
    """Fine-tune `model` on the noisy clip itself, then denoise it.

    `finetune_on_video` takes a video as a user has it (uint8), so it trains on the clipped and
    rounded noisy frames; the denoising pass sees the unclipped noisy clip like every other method.
    """
    finetune_on_video(model, np.ascontiguousarray(to_uint8(noisy).transpose(0, 3, 1, 2)), sigma, iterations,
                      batch_size=config.batch_size, patch_size=config.patch_size,
                      train_length=config.train_length)
    return stbn_denoise(model, noisy, sigma, prior_scale)
