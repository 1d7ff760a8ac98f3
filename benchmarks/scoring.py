"""Official-protocol scores of denoised clips held as (T,H,W,3) arrays, and parameter tuning.

Classical methods work on (T,H,W,3) numpy frames; the project's metrics take (T,3,H,W) tensors
in [0, 1]. Outputs are clamped to [0, 1] before scoring, as the official test clamps STBN's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from utils.colour import chroma_error
from utils.metrics import sequence_psnr, sequence_ssim
from utils.noise import add_test_noise


def to_tchw(frames: np.ndarray) -> torch.Tensor:
    """(T,H,W,3) float array to a float32 (T,3,H,W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)


def to_thwc(frames: torch.Tensor) -> np.ndarray:
    """(T,3,H,W) tensor to a float32 (T,H,W,3) array."""
    return frames.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float32)


def noisy_clip(clean: np.ndarray, sigma: float) -> np.ndarray:
    """The official test noise (seed 0, unclipped) on a (T,H,W,3) [0, 1] clip; `sigma` on [0, 1].

    Drawn in the (T,3,H,W) layout the official test uses, so the numbers match its noise.
    """
    return to_thwc(add_test_noise(to_tchw(clean), sigma))


def score(denoised: np.ndarray, clean: np.ndarray, ssim: bool = True) -> dict[str, float]:
    """PSNR (and SSIM and the chroma error, `utils.colour.chroma_error`) of a (T,H,W,3) output
    against the clean clip, output clamped to [0, 1]."""
    clamped = np.clip(denoised, 0.0, 1.0)
    den = to_tchw(clamped)
    ref = to_tchw(clean)
    scores = {"psnr": sequence_psnr(den, ref)}
    if ssim:
        scores["ssim"] = sequence_ssim(den, ref)
        scores["chroma_error"] = chroma_error(clamped, clean)
    return scores


def tune_parameter(denoise: Callable[[np.ndarray, float], np.ndarray], grid: Sequence[float],
                   noisy: np.ndarray, clean: np.ndarray) -> tuple[float, dict[float, float]]:
    """(the grid value with the best PSNR, PSNR of every grid value) of `denoise(noisy, value)`."""
    psnrs = {float(value): score(denoise(noisy, value), clean, ssim=False)["psnr"] for value in grid}
    return max(psnrs, key=psnrs.get), psnrs
