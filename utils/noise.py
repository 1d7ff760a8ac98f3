"""Additive white Gaussian noise exactly as the official STBN scripts draw it.

Test protocol (official sRGB_test.py): before each sequence the CPU RNG is seeded with 0 and
`torch.empty_like(seq).normal_(0, sigma)` fills one float32 tensor shaped like the whole clean
sequence; the noisy sequence is `clean + noise`, never clipped, then made contiguous.

The layout matters. The official loader (FastDVDnet's open_sequence) transposes each cv2 frame
HxWx3 -> 3xHxW as a NumPy view, so `seq` is (T,3,H,W) with the strides of a (T,H,W,3) array, and
`empty_like` keeps them. PyTorch's CPU `normal_` fills such a non-contiguous tensor with another
kernel, in memory order, than a contiguous one: same distribution, different numbers. We
therefore always draw into a (T,H,W,3) buffer viewed as (T,3,H,W), whatever layout the caller's
tensor has. A private generator seeded with 0 yields the very same numbers as reseeding the
global one (tested) and leaves the caller's global RNG state untouched.

Training (official sRGB_train_bsn.py): one sigma per clip, uniform in [a, b] when the two
`--noise_ival` values differ, fixed when they are equal; noise is i.i.d. per pixel, not clipped.
Noise levels: `sigma_255` (the 0-255 scale) at the command line and in reports, [0, 1] everywhere
inside; `unit_sigma` is the one conversion.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from utils.errors import UserError

TEST_NOISE_SEED = 0


def unit_sigma(sigma_255: float) -> float:
    """A noise level on the 0-255 scale (command line, reports) on the [0, 1] scale used inside."""
    return float(sigma_255) / 255.0


def official_test_noise(shape: Sequence[int], sigma: float) -> torch.Tensor:
    """The official test noise for a sequence of `shape` (..., C, H, W); `sigma` on the [0, 1] scale.

    Drawn on the CPU in float32, in the memory layout of the official loader's tensors (channels
    innermost, see the module docstring); leading dimensions of size 1 give the same numbers.
    """
    *lead, channels, height, width = shape
    generator = torch.Generator().manual_seed(TEST_NOISE_SEED)
    buffer = torch.empty((*lead, height, width, channels), dtype=torch.float32)
    return buffer.movedim(-1, -3).normal_(0.0, float(sigma), generator=generator)


def add_test_noise(seq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Return `seq + N(0, sigma^2)` exactly as the official test does; `sigma` on the [0, 1] scale.

    `seq` is (T,C,H,W) or (1,T,C,H,W) in any memory layout; the result is contiguous, on `seq`'s
    device and dtype (the noise is added on the CPU in float32 for float32 CPU input, as officially).
    """
    if seq.dim() < 3:
        raise ValueError(f"expected a sequence (..., C, H, W), got shape {tuple(seq.shape)}")
    noise = official_test_noise(seq.shape, sigma)
    return (seq + noise.to(device=seq.device, dtype=seq.dtype)).contiguous()


def sample_train_sigma(batch: int, noise_ival: Sequence[float],
                       generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """One sigma per sample, shape (N,1,1,1,1): uniform in [a, b] for two distinct values, else fixed.

    `noise_ival` is on the [0, 1] scale (see `parse_noise_ival`). A `generator` must live on
    `device`.
    """
    if len(noise_ival) not in (1, 2):
        raise ValueError(f"noise_ival needs one or two values, got {list(noise_ival)}")
    sigmas = torch.empty((batch, 1, 1, 1, 1), device=device)
    if len(noise_ival) == 2 and noise_ival[0] != noise_ival[1]:
        return sigmas.uniform_(float(noise_ival[0]), float(noise_ival[1]), generator=generator)
    return sigmas.fill_(float(noise_ival[0]))


def add_train_noise(seq: torch.Tensor, sigmas: torch.Tensor,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy clips and the noise-level map for a batch (N,T,3,H,W) and sigmas (N,1,1,1,1).

    Returns `(seq + sigma * N(0, 1), sigma broadcast to seq's shape)`; nothing is clipped.
    """
    noise_map = sigmas.to(device=seq.device, dtype=seq.dtype).expand_as(seq)
    noise = torch.randn(seq.shape, generator=generator, device=seq.device, dtype=seq.dtype)
    return seq + noise * noise_map, noise_map


def parse_sigma(value: str | float, name: str = "sigma") -> float:
    """Validate a noise level on the 0-255 scale (0 < sigma <= 255) and return it as a float.

    `name` is the argument to blame in the error message (e.g. '--noise_sigmas').
    """
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: {value!r} is not a number (expected a noise level in (0, 255])") from None
    if not math.isfinite(sigma) or sigma <= 0 or sigma > 255:
        raise UserError(f"{name}: {value!r} is out of range; a noise level must be in (0, 255] "
                        "on the 0-255 scale (e.g. 30)")
    return sigma


def parse_noise_ival(values: Sequence[str | float], name: str = "--noise_ival") -> list[float]:
    """Turn the CLI interval (one or two sigmas on the 0-255 scale) into the [0, 1] list the
    training uses: one value when both ends are equal (fixed sigma), else `[a, b]` with a < b."""
    sigmas = [parse_sigma(v, name) for v in values]
    if len(sigmas) not in (1, 2):
        raise UserError(f"{name}: give one or two noise levels, got {len(sigmas)}")
    if len(sigmas) == 2 and sigmas[0] > sigmas[1]:
        raise UserError(f"{name}: the interval {sigmas[0]:g} {sigmas[1]:g} is reversed; give the lower level first")
    if len(sigmas) == 2 and sigmas[0] == sigmas[1]:
        sigmas = sigmas[:1]
    return [unit_sigma(s) for s in sigmas]


@dataclass(frozen=True)
class PoissonGaussian:
    """Raw sensor noise on the normalised scale: a pixel of clean value x has variance a*x + b
    (shot gain a, read-noise variance b; CRVD's per-ISO values in datasets/crvd.py). Tensors of
    one value, or one per clip shaped to broadcast over (N,T,C,H,W)."""

    a: torch.Tensor | float
    b: torch.Tensor | float

    def variance(self, signal: torch.Tensor) -> torch.Tensor:
        """Per-pixel noise variance at `signal` (clamped at 0: no negative light)."""
        return self.a * signal.clamp(min=0) + self.b
