"""Colour measures on the YCbCr chroma of 8x8 local means (noise averages out, colour stays).

`colourfulness` tells whether a video kept its colour at all; `chroma_error` whether it kept the
right colour (a hue shift keeps colourfulness and still scores badly here).
"""
from __future__ import annotations

import cv2
import numpy as np

LOCAL_MEAN = (8, 8)


def local_chroma(frames: np.ndarray) -> np.ndarray:
    """(T,H,W,2) Cr, Cb of the 8x8 local means of RGB frames (T,H,W,3) on [0, 1], on the 0-255 scale,
    centred on grey (0)."""
    out = []
    for frame in np.asarray(frames, dtype=np.float32):
        ycc = cv2.blur(cv2.cvtColor(np.clip(frame, 0, 1), cv2.COLOR_RGB2YCrCb), LOCAL_MEAN)
        out.append((ycc[..., 1:] - 0.5) * 255.0)
    return np.stack(out)


def colourfulness(frames: np.ndarray) -> float:
    """Mean |(Cr, Cb)| of the local means: about 5 for a nearly grey clip, 26 for a colourful one."""
    chroma = local_chroma(frames)
    return float(np.hypot(chroma[..., 0], chroma[..., 1]).mean())


def chroma_error(denoised: np.ndarray, clean: np.ndarray) -> float:
    """Mean |(Cr, Cb) error| of the local means against the clean clip (0-255 scale): hue and
    saturation errors both count, noise mostly does not."""
    difference = local_chroma(denoised) - local_chroma(clean)
    return float(np.hypot(difference[..., 0], difference[..., 1]).mean())
