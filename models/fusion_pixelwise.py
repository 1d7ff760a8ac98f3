"""Direction fusion 'pixelwise': a 1x1 convolution 2F -> F in place of SRFE (the paper's ablation).

Per pixel, so it keeps the blind spot; the same call interface as SRFE.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class PixelwiseDirectionFusion(nn.Module):
    """(forward, backward) states (B,F,H,W) -> (B,F,H,W) by one 1x1 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x1, x2], dim=1))
