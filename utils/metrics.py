"""PSNR and SSIM exactly as the official STBN test computes them (skimage, per frame, averaged).

PSNR: `peak_signal_noise_ratio(clean.clip(0, 1), denoised, data_range=1)` on float32 frames.
SSIM: `structural_similarity` on float64 HxWx3 frames with Gaussian 11x11 windows (sigma 1.5),
K1 0.01, K2 0.03, data_range 1 and skimage's default `use_sample_covariance=True`.
Nothing is quantised to uint8. Sequences are (T,3,H,W) tensors (or arrays) in [0, 1].

Memory layout changes the last bit of the float64 sums inside skimage (the PSNR's mean squared
error is summed in memory order), so each frame is laid out as the official arrays are whatever
the caller passes: (3,H,W) views of HxWx3 memory for PSNR (the loader's transposed cv2 frames, and
the posterior's (T,H,W,3) result), contiguous HxWx3 float64 for SSIM.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_WINDOW = 11  # the official window: frames must be at least this large on both sides
SSIM_OPTIONS = dict(channel_axis=2, win_size=SSIM_WINDOW, gaussian_weights=True, sigma=1.5,
                    K1=0.01, K2=0.03, data_range=1)


def _hwc_float32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (3,H,W) frame as a contiguous HxWx3 float32 array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x).transpose(1, 2, 0), dtype=np.float32)


def _check_same_shape(den, clean, rank: int) -> None:
    if tuple(den.shape) != tuple(clean.shape) or len(den.shape) != rank:
        raise ValueError(f"expected two {rank}-d arrays of equal shape, got {tuple(den.shape)} "
                         f"and {tuple(clean.shape)}")


def frame_psnr(den: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray) -> float:
    """PSNR in dB of one (3,H,W) frame; the clean frame is clipped to [0, 1] first."""
    _check_same_shape(den, clean, 3)
    clean_chw = _hwc_float32(clean).transpose(2, 0, 1)
    den_chw = _hwc_float32(den).transpose(2, 0, 1)
    return float(peak_signal_noise_ratio(clean_chw.clip(0, 1), den_chw, data_range=1.0))


def frame_ssim(den: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray) -> float:
    """SSIM of one (3,H,W) frame (computed on float64 HxWx3, as the official batch_ssim does)."""
    _check_same_shape(den, clean, 3)
    clean_hwc = _hwc_float32(clean).astype(np.float64)
    den_hwc = _hwc_float32(den).astype(np.float64)
    return float(structural_similarity(clean_hwc, den_hwc, **SSIM_OPTIONS))


def sequence_psnr(den: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray) -> float:
    """Mean over frames of `frame_psnr` for (T,3,H,W) sequences."""
    _check_same_shape(den, clean, 4)
    return _frame_mean(frame_psnr, den, clean)


def sequence_ssim(den: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray) -> float:
    """Mean over frames of `frame_ssim` for (T,3,H,W) sequences."""
    _check_same_shape(den, clean, 4)
    return _frame_mean(frame_ssim, den, clean)


def _frame_mean(metric, den, clean) -> float:
    """Sum in frame order then divide, as the official loop does (bit-identical averages)."""
    values = [metric(d, c) for d, c in zip(den, clean)]
    return float(sum(values) / len(values))
