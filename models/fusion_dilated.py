"""Direction fusion 'dilated': a plain dilated stack in place of SRFE (worked ablation example).

SRFE enlarges the receptive field by pixel shuffling; this block fuses the two directions with
the same dilated residual units as the rest of STBN instead: [forward, backward] (2F) -> F -> F.
Only 1x1 and dilation-2 3x3 convolutions, i.e. even offsets, so the blind spot is kept.
"""
from __future__ import annotations

import torch

from models.dilated import DilatedStack

UNITS = 4


class DilatedDirectionFusion(DilatedStack):
    """(forward, backward) states (B,F,H,W) -> (B,F,H,W) through `UNITS` dilated residual units."""

    def __init__(self, channels: int) -> None:
        super().__init__(2 * channels, channels, channels, UNITS)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([x1, x2], dim=1))
