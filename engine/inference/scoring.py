"""The official per-sequence scoring step, in one place.

The authors' test protocol for one clean sequence at one noise level: `torch.manual_seed(0)` and one
unclipped Gaussian draw over the whole sequence (`utils.noise.add_test_noise`, in their loader's
memory layout), whole-sequence bidirectional denoising with the posterior mean, clamp to [0, 1],
scikit-image PSNR and SSIM per frame (`utils.metrics`), summed in frame order and divided.
`sRGB_test.py`, the validation inside training and main.sh's built-in report all score through
`score_sequence`, so their numbers cannot drift apart.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engine.inference.sequence import FrameCallback, denoise_frames
from utils.errors import UserError
from utils.gaussian import PriorScale
from utils.metrics import frame_psnr, frame_ssim
from utils.noise import add_test_noise


@dataclass(frozen=True)
class SequenceScore:
    """Mean per-frame PSNR (dB) and SSIM (None when not computed) of one denoised sequence;
    `seconds` covers denoising and the `on_frame` callbacks (PNG writing), not the metrics, as the
    official timing does."""

    psnr: float
    ssim: float | None
    frames: int
    seconds: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.psnr) and (self.ssim is None or math.isfinite(self.ssim))


def frame_mean(values: list[float]) -> float:
    """Sum in frame order, then divide: the official fastdvdnet_batch_psnr / batch_ssim averages."""
    return float(sum(values) / len(values))


def score_frames(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, sigma: float, memory: str = "auto",
                 prior_scale: PriorScale = 1.0, ssim: bool = True, on_frame: FrameCallback | None = None,
                 require_finite: bool = True, precision: torch.dtype | None = None) -> SequenceScore:
    """Denoise `noisy` (T,3,H,W) at noise level `sigma` ([0, 1] scale) and score it against `clean`.

    With `require_finite`, the first non-finite denoised frame raises a one-line `UserError` before
    `on_frame` sees it (nothing is written from a broken output); without it (training validation)
    the scores come back NaN.
    """
    psnrs, ssims = [], []
    metric_seconds = 0.0
    start = time.perf_counter()
    for t, denoised in denoise_frames(model, noisy, sigma, memory, prior_scale=prior_scale, precision=precision):
        if require_finite and not bool(torch.isfinite(denoised).all()):
            raise UserError(f"denoised frame {t} is not finite (NaN or inf): the checkpoint or the input is broken")
        if on_frame is not None:
            on_frame(t, denoised)
        metric_start = time.perf_counter()
        psnrs.append(frame_psnr(denoised, clean[t]))
        if ssim:
            ssims.append(frame_ssim(denoised, clean[t]))
        metric_seconds += time.perf_counter() - metric_start
    seconds = time.perf_counter() - start - metric_seconds
    return SequenceScore(frame_mean(psnrs), frame_mean(ssims) if ssim else None, len(psnrs), seconds)


def score_sequence(model: nn.Module, clean: torch.Tensor, sigma: float, memory: str = "auto",
                   prior_scale: PriorScale = 1.0, ssim: bool = True, on_frame: FrameCallback | None = None,
                   require_finite: bool = True, adapt: Callable[[torch.Tensor], None] | None = None,
                   precision: torch.dtype | None = None) -> tuple[torch.Tensor, SequenceScore]:
    """(the protocol's noisy sequence, its score): noise `clean` (T,3,H,W, [0, 1]) at `sigma`
    ([0, 1] scale) as the official test does, then `score_frames` (`precision`: the network's
    autocast type, None = float32, the protocol's). `adapt(noisy)` runs in between
    (per-video fine-tuning, the paper's STBN_s, trains on exactly the noise it is scored on)."""
    noisy = add_test_noise(clean, sigma)
    if adapt is not None:
        adapt(noisy)
    return noisy, score_frames(model, noisy, clean, sigma, memory, prior_scale, ssim, on_frame, require_finite,
                               precision)
