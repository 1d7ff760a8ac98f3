"""Backward warping of STBN's hidden features along an optical flow.

`backward_warp(x, flow)` samples x at p + flow(p), so with flow = F(im1, im2) it brings features
of frame 2 onto frame 1. The sampling positions are built exactly as the authors' warp (ZKCCZ/STBN)
(integer pixel grid + flow, normalised by 2*v/max(W-1,1) - 1, grid_sample align_corners=True,
zeros outside): a value within float error of a half pixel then rounds as in the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WARP_MODES = ("nearest", "bilinear")
# FloRNN zeroes bilinear samples whose footprint leaves the frame (warped ones below this).
_BILINEAR_VALID = 0.9999


def _sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """(N,2,H,W) pixel flow -> (N,H,W,2) grid_sample coordinates (align_corners=True)."""
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    grid_x = 2.0 * (xs + flow[:, 0]) / max(width - 1, 1) - 1.0
    grid_y = 2.0 * (ys + flow[:, 1]) / max(height - 1, 1) - 1.0
    return torch.stack([grid_x, grid_y], dim=3)


def backward_warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Warp x (N,C,H,W) by flow (N,2,H,W) in pixels; returns (N,C,H,W).

    'nearest' is STBN's warp (no mask: outside samples are 0). 'bilinear' is FloRNN's warp for the
    ablation: bilinear sampling, and outputs whose taps touch the outside are set to 0.
    """
    if mode not in WARP_MODES:
        raise ValueError(f"unknown warp mode {mode!r}; expected one of {WARP_MODES}")
    if flow.shape[0] != x.shape[0] or flow.shape[1] != 2 or flow.shape[2:] != x.shape[2:]:
        raise ValueError(f"flow {tuple(flow.shape)} does not match features {tuple(x.shape)}")
    # Half-precision grids cannot address pixels exactly: sample in float32 and cast back.
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    source = x.to(work)
    grid = _sampling_grid(flow.to(work))
    if mode == "nearest":
        out = F.grid_sample(source, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    else:
        ones = source.new_ones(x.shape[0], 1, *x.shape[2:])
        sampled = F.grid_sample(torch.cat([source, ones], dim=1), grid, mode="bilinear",
                                padding_mode="zeros", align_corners=True)
        out = sampled[:, :-1] * (sampled[:, -1:] >= _BILINEAR_VALID).to(work)
    return out.to(x.dtype)
