"""A classical ISP for looking at raw frames: demosaic, gray-world white balance, sRGB gamma.

For pictures only (CRVD_test.py --output_png, mainraw.sh, denoise.py --raw previews). The paper's
sRGB numbers come from RViDeNet's learned ISP (models/isp.py, `--isp FILE`); sRGB metrics through
this one are labelled as not comparable with them.
- demosaic: OpenCV's edge-aware Bayer interpolation of the GBRG mosaic (OpenCV names this phase
  'GR': its codes are named by the second row), on 16-bit values;
- white balance: gray-world gains (mean G over the mean of each channel), computed once per scene
  from a reference frame and applied to every image of it, so that noisy, denoised and clean
  frames are shown alike;
- gamma: the sRGB transfer curve, then clipping to [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.raw import unpack_gbrg

# OpenCV's conversion for a mosaic whose first row is G B (ours, CRVD's GBRG).
_GBRG_TO_RGB = cv2.COLOR_BayerGR2RGB_EA


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve on [0, 1] (inverse of datasets.simulated_raw.srgb_to_linear)."""
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def demosaic(packed: torch.Tensor) -> np.ndarray:
    """A packed frame (4,h,w) on [0, 1] -> linear RGB (2h,2w,3) float32."""
    mosaic = unpack_gbrg(packed.detach().float().clamp(0, 1).cpu()).numpy()
    return cv2.cvtColor(np.rint(mosaic * 65535).astype(np.uint16), _GBRG_TO_RGB).astype(np.float32) / 65535


def gray_world_gains(reference: torch.Tensor) -> np.ndarray:
    """Per-channel gains (R, G, B) that make the reference frame's mean colour gray."""
    means = demosaic(reference).reshape(-1, 3).mean(axis=0)
    return (means[1] / np.maximum(means, 1e-6)).astype(np.float32)


def classical_isp(packed: torch.Tensor, gains: np.ndarray) -> np.ndarray:
    """A packed frame (4,h,w) -> sRGB (2h,2w,3) float32 on [0, 1], with white-balance `gains`."""
    return linear_to_srgb(demosaic(packed) * gains).astype(np.float32)
