"""Blind-spot alignment (BSA): bring the previous hidden state onto the current frame, then re-fuse.

Two parts, applied in every recurrence step after the first (models/stbn.py `STBN.step`):
1. `align_state` warps the previous state along the optical flow: nearest-neighbour backward
   warping (official), FloRNN's bilinear warp with a validity mask, or average forward splatting.
2. `BlindSpotAlignment` (official attribute `concat`, shared by both directions) fuses the
   blind-spot cell's output with the aligned state. It is a dilated stack (1x1 and dilation-2
   3x3 convolutions only), so it never reaches the centre pixel of the current frame.
Without BSA (`StbnConfig.bsa=False`, the ablation) the state is the cell output alone.
"""
from __future__ import annotations

import torch

from models.dilated import DilatedStack
from models.warp import backward_warp

ALIGN_MODES = ("nearest", "bilinear", "softsplat")


def align_state(h: torch.Tensor, flow: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Bring a hidden state (N,C,H,W) onto the neighbouring frame along `flow` (N,2,H,W).

    Backward warping ('nearest', 'bilinear') needs the flow F(target, source); forward splatting
    ('softsplat') needs F(source, target) (`STBN.pair_flow` picks the right one).
    """
    if mode == "softsplat":
        from softmax_splatting import splat  # optional ablation path, imported on use
        return splat(h, flow, None, "avg")
    return backward_warp(h, flow, mode=mode)


class BlindSpotAlignment(DilatedStack):
    """[cell output, aligned state] (2F channels) -> 2F -> F: the re-fused hidden state."""

    def __init__(self, num_channels: int, num_resblocks: int) -> None:
        super().__init__(2 * num_channels, 2 * num_channels, num_channels, num_resblocks)
