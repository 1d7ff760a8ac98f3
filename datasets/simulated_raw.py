"""Built-in simulated raw video in the CRVD layout, so the raw pipeline runs with no download.

From a built-in sRGB clip: the inverse sRGB curve gives linear light, a GBRG mosaic samples it
(even rows G B, odd rows R G), 12-bit values put it above the black level 240, and the official
per-ISO Poisson-Gaussian noise (datasets/crvd.py) makes the noisy captures. Everything is written as
16-bit TIFFs in CRVD's folder tree, so the real CRVD readers are exercised.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from datasets.builtin import builtin_split
from datasets.crvd import (
    CAPTURES,
    CLEAN_NAME,
    FRAMES,
    ISOS,
    LAYOUTS,
    NOISY_NAME,
    TEST_SCENES,
    layout_dir,
    noise_parameters,
)
from utils.atomic import atomic_path
from utils.raw import BLACK_LEVEL, RAW_RANGE, WHITE_LEVEL


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """The inverse sRGB transfer curve on [0, 1] (float64)."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def mosaic_gbrg(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) -> (..., H, W) GBRG mosaic: each sample taken from its own pixel."""
    mosaic = np.empty(rgb.shape[:-1], dtype=rgb.dtype)
    mosaic[..., 0::2, 0::2] = rgb[..., 0::2, 0::2, 1]
    mosaic[..., 0::2, 1::2] = rgb[..., 0::2, 1::2, 2]
    mosaic[..., 1::2, 0::2] = rgb[..., 1::2, 0::2, 0]
    mosaic[..., 1::2, 1::2] = rgb[..., 1::2, 1::2, 1]
    return mosaic


def clean_raw(frames_u8: np.ndarray) -> np.ndarray:
    """uint8 sRGB frames (T,H,W,3), even H and W -> 12-bit GBRG mosaics (T,H,W) as float64 values."""
    return BLACK_LEVEL + RAW_RANGE * mosaic_gbrg(srgb_to_linear(frames_u8.astype(np.float64) / 255))


def noisy_raw(clean_12bit: np.ndarray, iso: int, generator: torch.Generator) -> np.ndarray:
    """A noisy capture of `clean_12bit`: Poisson(x/a)*a + N(0, b) on the normalised scale (the
    official noise), back to 12-bit integers clipped to the sensor's range, uint16."""
    a, b = noise_parameters(iso)
    clean = torch.from_numpy((clean_12bit - BLACK_LEVEL) / RAW_RANGE).float().clamp(min=0)
    counts = torch.poisson(clean / a, generator=generator)
    noisy = counts * a + b.sqrt() * torch.randn(clean.shape, generator=generator)
    return np.clip(np.rint(noisy.double().numpy() * RAW_RANGE + BLACK_LEVEL), 0, WHITE_LEVEL).astype(np.uint16)


def _write_tiff(path: Path, frame: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".tiff", frame)
    if not ok:
        raise OSError(f"cannot encode '{path}' as TIFF")
    with atomic_path(path, "raw frame") as tmp:
        tmp.write_bytes(encoded.tobytes())


# Raw frame size (H, W) of the simulated video unless asked otherwise: 64x80 packed, small enough for
# CPU training and evaluation in minutes.
SIMULATED_SIZE = (128, 160)


def write_simulated_crvd(root: str | os.PathLike, clip: str = "bikes", height: int = SIMULATED_SIZE[0],
                         width: int = SIMULATED_SIZE[1],
                         scenes: tuple[int, ...] = TEST_SCENES, isos: tuple[int, ...] = ISOS,
                         captures: int = CAPTURES, layout: str = "stbn", seed: int = 0) -> Path:
    """Write a CRVD-layout tree ('stbn' or 'florn' layout) of simulated raw video under `root`.

    Scene s is a `height` x `width` window of `FRAMES` frames of the built-in clip's training part,
    one window per scene; each ISO gets the clean sequence and `captures` noisy ones.
    """
    if height % 2 or width % 2:
        raise ValueError(f"a Bayer mosaic needs even sides, got {width}x{height}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown CRVD layout {layout!r}; expected one of {LAYOUTS}")
    frames, _ = builtin_split(clip)
    generator = torch.Generator().manual_seed(seed)
    root = Path(root)
    for s, scene in enumerate(scenes):
        start = (s * FRAMES * 3) % max(1, len(frames) - FRAMES)
        top = (s * 17 * 2) % max(2, frames.shape[1] - height) // 2 * 2
        left = (s * 29 * 2) % max(2, frames.shape[2] - width) // 2 * 2
        clean = clean_raw(frames[start:start + FRAMES, top:top + height, left:left + width])
        for iso in isos:
            folders = {kind: layout_dir(root, kind, scene, iso, layout) for kind in ("gt", "noisy")}
            for folder in folders.values():
                folder.mkdir(parents=True, exist_ok=True)
            for t in range(FRAMES):
                _write_tiff(folders["gt"] / CLEAN_NAME.format(t=t + 1), np.rint(clean[t]).astype(np.uint16))
            for k in range(captures):
                noisy = noisy_raw(clean, iso, generator)
                for t in range(FRAMES):
                    _write_tiff(folders["noisy"] / NOISY_NAME.format(t=t + 1, k=k), noisy[t])
    return root
