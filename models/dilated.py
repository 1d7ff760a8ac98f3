"""The dilated stack (official `D_dilate`): STBN's building block for channel fusion.

1x1 conv (no bias) -> `num_res` dilated residual units -> 1x1 conv (no bias), no activations in
between. It only mixes channels (1x1) and even offsets (3x3, dilation 2), so it keeps the blind
spot of its inputs. STBN uses it twice: as blind-spot alignment (models/alignment.py) and as the
Gaussian head (models/head.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.blind_spot import DilatedResidualUnit


class DilatedStack(nn.Module):
    """`convs` = [1x1 (no bias), `num_res` dilated residual units, 1x1 (no bias)].

    The two 1x1 convolutions have bias=False in the official code while the units' convolutions
    have a bias; the checkpoint keys (`convs.0.weight`, `convs.{1..n}.body.{0,2}`, `convs.{n+1}`)
    follow from that.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, num_res: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False),
            *[DilatedResidualUnit(mid_channels, dilation=2) for _ in range(num_res)],
            nn.Conv2d(mid_channels, out_channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)
