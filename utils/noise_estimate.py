"""Blind estimate of the Gaussian noise level of a video (`denoise.py --sigma auto`).

The estimator is the patch-PCA method of Chen, Zhu & Heng (ICCV 2015, "An efficient statistical
method for image noise level estimation"): the covariance of small colour patches has the noise
variance as its smallest eigenvalues, where the clean signal, being of low rank in patch space,
adds nothing; the noise eigenvalues are the longest tail of the sorted spectrum whose mean does
not exceed its median. We use it rather than scikit-image's `estimate_sigma` (wavelet MAD), which
we measured outside a 10% bound on the built-in clips: +10.6% at sigma 5 (texture leaks into the
finest wavelet band) and -15% at sigma 50 on clipped 8-bit video.

Clipped video (8-bit frames whose noise is cut off at 0 and 255) would bias any estimator low, so
patches whose local mean comes within `SATURATION_MARGIN` noise levels of black or white are left
out, and the estimate is repeated with the margin of the previous estimate.

Compressed video (H.264 / MPEG-4) keeps noise only as spatially correlated blotches: its finest
patch components, where this estimator looks, are nearly noise-free (a sigma-25 clip written as
OpenCV mp4 reads as sigma 3.6 although it differs from the clean clip by 17.3 rms).
`correlated_noise_sigma` flags such input by estimating again on 2x2 pixel means, where white noise
halves and correlated noise does not.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter

PATCH = 6
STRIDE = 3
MAX_FRAMES = 8
MAX_PATCHES = 60_000
SATURATION_MARGIN = 1.5   # patches whose local mean is this many sigmas from 0 or 1 are kept
LOCAL_MEAN_SIZE = 5
REFINEMENTS = 2
# Fewest patches per patch dimension for a covariance worth trusting; fewer: the margin shrinks.
MIN_PATCHES_PER_DIM = 20
# Noise counts as spatially correlated when the 2x2-mean estimate, doubled, is this many times the
# full-resolution one (white noise: 1.0; a sigma-25 clip through OpenCV mp4: 5.7) and above the floor.
CORRELATION_RATIO = 2.0
CORRELATION_FLOOR = 3.0 / 255.0


def _patches(frame: np.ndarray, margin: float) -> np.ndarray:
    """The frame's PATCH x PATCH x C patches on a STRIDE grid, as rows, away from saturation."""
    windows = sliding_window_view(frame, (PATCH, PATCH), axis=(0, 1))[::STRIDE, ::STRIDE]
    rows = windows.reshape(-1, windows[0, 0].size)
    if margin <= 0:
        return rows
    local = uniform_filter(frame, size=(LOCAL_MEAN_SIZE, LOCAL_MEAN_SIZE, 1), mode="nearest")
    local_windows = sliding_window_view(local, (PATCH, PATCH), axis=(0, 1))[::STRIDE, ::STRIDE]
    local_rows = local_windows.reshape(rows.shape)
    keep = (local_rows.min(axis=1) > margin) & (local_rows.max(axis=1) < 1 - margin)
    return rows[keep]


def _noise_eigen_tail(patches: np.ndarray) -> float:
    """Noise variance from the patch covariance spectrum (Chen et al. 2015)."""
    centred = patches - patches.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred / len(centred))[::-1]
    for start in range(len(eigenvalues)):
        tail = eigenvalues[start:]
        if tail.mean() <= np.median(tail):
            return float(max(tail.mean(), 0.0))
    return float(max(eigenvalues[-1], 0.0))


def _sample(frames: list[np.ndarray], margin: float, rng: np.random.Generator) -> np.ndarray:
    rows = np.concatenate([_patches(frame, margin) for frame in frames])
    if len(rows) > MAX_PATCHES:
        rows = rows[rng.choice(len(rows), MAX_PATCHES, replace=False)]
    return rows


def _spread_picks(count: int) -> np.ndarray:
    """Indices of up to MAX_FRAMES frames spread evenly over a video of `count` frames."""
    return np.unique(np.linspace(0, count - 1, min(MAX_FRAMES, count)).round().astype(int))


def _unit_scale(dtype: np.dtype) -> float:
    """What stored values are divided by to read them on [0, 1]."""
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


def correlated_noise_sigma(frames: np.ndarray, sigma: float) -> float | None:
    """For frames whose `estimate_noise_sigma` is `sigma`: the white-noise level that the 2x2 pixel
    means of the frames it reads imply (twice their estimate) when it is CORRELATION_RATIO times
    `sigma` or more, i.e. the noise is spatially correlated (compressed video) and `sigma` sees
    only its fine part; else None (also when the halved frames are too small to estimate)."""
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    values = frames[_spread_picks(len(frames)), :height, :width].astype(np.float64) / _unit_scale(frames.dtype)
    means = values.reshape(len(values), height // 2, 2, width // 2, 2, -1).mean(axis=(2, 4))
    try:
        coarse = 2.0 * estimate_noise_sigma(means)
    except ValueError:
        return None
    return coarse if coarse >= max(CORRELATION_RATIO * sigma, CORRELATION_FLOOR) else None


def estimate_noise_sigma(frames: np.ndarray) -> float:
    """Standard deviation of i.i.d. Gaussian noise in `frames` (T,H,W,C) on the [0, 1] scale.

    Float frames are read as they are (unclipped values allowed), uint8 / uint16 frames are
    scaled by 255 / 65535; gray video stored with equal RGB channels is read as one channel. Up
    to MAX_FRAMES frames spread over the video are used; the result is
    deterministic. `ValueError` when the frames hold too few patches for a trustworthy covariance
    (about 45x45 pixels of 8 colour frames).
    """
    if frames.ndim != 4 or frames.shape[1] < PATCH or frames.shape[2] < PATCH:
        raise ValueError(f"expected frames (T,H,W,C) of at least {PATCH}x{PATCH} pixels, got {frames.shape}")
    if frames.shape[3] > 1 and all(np.array_equal(frames[..., 0], frames[..., c]) for c in range(1, frames.shape[3])):
        frames = frames[..., :1]  # gray stored as RGB: the copies would hide the noise from the spectrum
    scale = _unit_scale(frames.dtype)
    chosen = [frames[t].astype(np.float64) / scale for t in _spread_picks(len(frames))]
    dims = PATCH * PATCH * frames.shape[3]
    rows = _sample(chosen, 0.0, np.random.default_rng(0))
    if len(rows) < MIN_PATCHES_PER_DIM * dims:
        raise ValueError(f"too few pixels to estimate the noise level: {len(rows)} patches of {PATCH}x{PATCH}, "
                         f"need {MIN_PATCHES_PER_DIM * dims}")
    sigma = np.sqrt(_noise_eigen_tail(rows))
    for _ in range(REFINEMENTS):
        margin = SATURATION_MARGIN * sigma
        rows = _sample(chosen, margin, np.random.default_rng(0))
        while len(rows) < MIN_PATCHES_PER_DIM * dims and margin > 1e-3:
            margin /= 2  # mostly saturated footage: accept some clipping bias over too few patches
            rows = _sample(chosen, margin, np.random.default_rng(0))
        if len(rows) >= MIN_PATCHES_PER_DIM * dims:
            sigma = np.sqrt(_noise_eigen_tail(rows))
    return float(sigma)
