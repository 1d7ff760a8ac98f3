"""The Gaussian head (official `d2`): per-pixel mean and covariance factor of the clean value.

For C image channels the head predicts C means and the C(C+1)/2 entries of a triangular factor A
of the prior covariance (utils/gaussian.py); a mean-only head (C outputs) is the plain
blind-spot variant. It is a dilated stack with half the residual units of the other blocks.
"""
from __future__ import annotations

from models.dilated import DilatedStack
from utils.gaussian_hetero import head_channels


def gaussian_outputs(img_channels: int) -> int:
    """Mean plus covariance-factor channels for `img_channels` (9 for RGB, 14 for packed raw)."""
    return head_channels(img_channels)


class GaussianHead(DilatedStack):
    """num_channels -> num_channels -> `outputs`, with num_resblocks // 2 dilated units."""

    def __init__(self, num_channels: int, outputs: int, num_resblocks: int) -> None:
        super().__init__(num_channels, num_channels, outputs, num_resblocks // 2)
