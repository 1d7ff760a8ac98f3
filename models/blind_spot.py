"""The blind-spot cell of STBN's propagation (official `DBSNl`, from AP-BSN) and its parts.

Why the output at pixel p never sees the input at p: the only spatial convolution that touches
offsets that are not both even is the first 3x3 convolution, and its centre tap is masked, so it
reads offsets {-1,0,1}^2 minus (0,0). Every later spatial convolution is 3x3 with dilation 2 and
only adds even offsets; all others are 1x1. An odd offset plus even offsets is never (0,0).

Attribute names and Sequential indices follow the official code so that its checkpoint loads
with `strict=True` (`head.0`, `branch1.body.0..12`, `tail.0/2/4`, `*.body.0/2`, `mask`).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CentreMaskedConv2d(nn.Conv2d):
    """A Conv2d whose centre tap is zeroed at every forward (official `CentralMaskedConv2d`).

    The mask is a persistent buffer `mask` (weight-shaped, ones except the centre tap) because
    the official checkpoint stores it. The official layer multiplies `weight.data` in place
    before each forward, so the saved centre taps may be non-zero (the last optimiser step
    comes after the last forward); here the product `weight * mask` is formed functionally at
    forward time, which also keeps the masked tap out of the gradient.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        mask = torch.ones_like(self.weight, requires_grad=False)
        k_h, k_w = self.kernel_size
        mask[:, :, k_h // 2, k_w // 2] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class DilatedConvPair(nn.Module):
    """`body` = [3x3 conv with dilation d, ReLU, 1x1 conv]; no residual.

    It is the official SRFE `DCl` (there with groups=2, its residual comes from the enclosing
    `RCAB`) and the body of `DilatedResidualUnit`.
    """

    def __init__(self, channels: int, dilation: int = 2, groups: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DilatedResidualUnit(DilatedConvPair):
    """x + body(x): the official `DCl(stride, ch)` of DBSNl and D_dilate (dilation = stride).

    The sum is accumulated in place into the body's fresh output (a convolution does not keep
    its output for backward), which saves one large allocation per unit.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)


class BlindSpotBranch(nn.Module):
    """Official `DC_branchl(stride=2)`: masked 3x3, two 1x1, `num_module` dilated units, 1x1.

    `body` indices: 0 masked conv, 1 ReLU, 2 1x1, 3 ReLU, 4 1x1, 5 ReLU, 6.. units, then 1x1, ReLU.
    """

    def __init__(self, channels: int, num_module: int, stride: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            CentreMaskedConv2d(channels, channels, kernel_size=2 * stride - 1, padding=stride - 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(inplace=True),
            *[DilatedResidualUnit(channels, dilation=stride) for _ in range(num_module)],
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BlindSpotCell(nn.Module):
    """Official `DBSNl(in_ch, out_ch, base_ch, num_module)`: 1x1 head, one blind-spot branch, 1x1 tail.

    The official class defines a second branch but never builds it (single-branch "light" version),
    and there is no skip from input to output.
    """

    def __init__(self, in_ch: int, out_ch: int, base_ch: int, num_module: int) -> None:
        super().__init__()
        if base_ch % 2:
            raise ValueError(f"base_ch must be even, got {base_ch}")
        half = base_ch // 2
        self.head = nn.Sequential(nn.Conv2d(in_ch, base_ch, 1), nn.ReLU(inplace=True))
        self.branch1 = BlindSpotBranch(base_ch, num_module)
        self.tail = nn.Sequential(
            nn.Conv2d(base_ch, half, 1), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 1), nn.ReLU(inplace=True),
            nn.Conv2d(half, out_ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.branch1(self.head(x)))

