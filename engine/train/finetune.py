"""Self-supervised fine-tuning on the very video to be denoised (the paper's per-video "STBN_s").

STBN trains without clean frames: the noisy clip is the network input and the target of the
Gaussian log-likelihood. Training normally adds synthetic noise to clean clips first; a user's
video is already noisy, so here its frames go in as they are, with the user's sigma for the noise
map and the likelihood, and no extra noise. Random crops of short clips come from the training
sampler (`TrainClipDataset.from_sequences`); each step is the training's `train_step`.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.train_clips import TrainClipDataset
from engine.train.step import train_step
from utils.errors import UserError, warn

# The paper-scale crops (sRGB_test.py --finetune, the STBN_s protocol).
DEFAULT_PATCH_SIZE = 96
DEFAULT_TRAIN_LENGTH = 8
# denoise.py's crops: sized for a CPU (2 clips x 4 frames x 64x64, well under a second a step with the
# default model), the setting measured in the README's "Default model" table.
VIDEO_BATCH_SIZE = 2
VIDEO_PATCH_SIZE = 64
VIDEO_TRAIN_LENGTH = 4
# Steps denoise.py runs with the default model unless told otherwise: what brings its colour back
# (tests/test_default_model.py) and beats NLM on carphone and bikes; about two minutes on 2 CPU cores.
DEFAULT_MODEL_FINETUNE_STEPS = 160


def finetune_on_video(model: nn.Module, frames: np.ndarray, sigma: float, iterations: int,
                      lr: float = 1e-4, batch_size: int = 4, patch_size: int = DEFAULT_PATCH_SIZE,
                      train_length: int = DEFAULT_TRAIN_LENGTH, seed: int = 0,
                      desc: str = "fine-tuning", time_budget_s: float | None = None) -> list[float]:
    """Train `model` (on its device) for `iterations` Adam steps on crops of `frames`.

    `frames`: the noisy video (T,3,H,W), uint8, or float32 on the [0, 1] scale and unclipped (the
    evaluation's protocol noise); `sigma` on the [0, 1] scale. Patch size and clip length shrink to
    fit small videos. With `time_budget_s`, training also stops before a step that would end past
    the budget (judged by the mean step time so far), so it ends within one step of it. Returns the
    loss of every step; non-finite steps are skipped. The model is left in eval mode without gradients.
    """
    if iterations < 1:
        raise UserError(f"--finetune must be at least 1 iteration, got {iterations}")
    if len(frames) < 2:
        raise UserError("--finetune needs a video of at least 2 frames")
    device = next(model.parameters()).device
    patch = min(patch_size, *frames.shape[2:])
    length = min(train_length, len(frames))
    dataset = TrainClipDataset.from_sequences([frames], train_length=length, patch_size=patch,
                                              patches_per_epoch=iterations * batch_size, temp_stride=1,
                                              names=["input video"])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the sampler's crop positions
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
    groups = model.trainable_parameters()
    params = [p for group in groups for p in group["params"]]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(groups, lr=lr)
    model.train()
    losses: list[float] = []
    start, steps = time.monotonic(), 0
    try:
        for clips in tqdm(loader, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True):
            if time_budget_s is not None and steps:
                elapsed = time.monotonic() - start
                if elapsed + elapsed / steps > time_budget_s:
                    break
            steps += 1
            noisy = clips.to(device).float()
            if frames.dtype == np.uint8:
                noisy.div_(255)
            sigmas = torch.full((noisy.shape[0],), float(sigma), device=device)
            result = train_step(model, optimizer, params, noisy, torch.full_like(noisy, float(sigma)), sigmas)
            if not result.finite:
                warn("fine-tuning: skipped a step with a non-finite loss or gradient")
                continue
            losses.append(result.loss)
    finally:
        model.requires_grad_(False)
        model.eval()
    return losses
