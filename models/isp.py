"""RViDeNet's learned ISP (raw -> sRGB), used only to score denoised raw video in the sRGB domain.

CRVD's conventional protocol converts packed raw frames to sRGB with the pretrained network that
RViDeNet released (the authors' repository ships its weights as `models/rvidenet/isp.pth`; nothing
is downloaded here: pass the file). It is a small U-Net at half resolution: two 3x3 convolutions
per level with LeakyReLU(0.2), 32 -> 64 -> 128 channels with 2x2 max-pooling, transposed-convolution
upsampling with skip concatenation back to 64 and 32, a 1x1 convolution to 12 channels and a 2x
pixel shuffle to a full-resolution RGB frame. Its input is packed in R, G, B, G order (the CRVD
packing's last two channels swapped). Attribute names are those of the released weights.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checkpoint import load_checkpoint
from utils.errors import UserError

_SLOPE = 0.2


def to_isp_order(packed: torch.Tensor) -> torch.Tensor:
    """Packed frames (..., 4, H, W) in CRVD's R, G, G, B order -> the ISP's R, G, B, G order."""
    return packed[..., [0, 1, 3, 2], :, :]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1)


class RViDeNetISP(nn.Module):
    """(N,4,h,w) RGBG-packed normalised raw -> (N,3,2h,2w) sRGB (h and w multiples of 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_1, self.conv1_2 = _conv(4, 32), _conv(32, 32)
        self.conv2_1, self.conv2_2 = _conv(32, 64), _conv(64, 64)
        self.conv3_1, self.conv3_2 = _conv(64, 128), _conv(128, 128)
        self.upv4 = nn.ConvTranspose2d(128, 64, 2, stride=2)
        self.conv4_1, self.conv4_2 = _conv(128, 64), _conv(64, 64)
        self.upv5 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.conv5_1, self.conv5_2 = _conv(64, 32), _conv(32, 32)
        self.conv6_1 = nn.Conv2d(32, 12, kernel_size=1)

    @staticmethod
    def _pair(first: nn.Conv2d, second: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(second(F.leaky_relu(first(x), _SLOPE)), _SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level1 = self._pair(self.conv1_1, self.conv1_2, x)
        level2 = self._pair(self.conv2_1, self.conv2_2, F.max_pool2d(level1, 2))
        level3 = self._pair(self.conv3_1, self.conv3_2, F.max_pool2d(level2, 2))
        up4 = self._pair(self.conv4_1, self.conv4_2, torch.cat([self.upv4(level3), level2], 1))
        up5 = self._pair(self.conv5_1, self.conv5_2, torch.cat([self.upv5(up4), level1], 1))
        return F.pixel_shuffle(self.conv6_1(up5), 2)


def load_isp(path: str | os.PathLike) -> RViDeNetISP:
    """The ISP with the released weights of `path` (a dict with 'state_dict', or the state dict),
    loaded strictly, in eval mode; `UserError` when the file is not that network."""
    data = load_checkpoint(path)
    state = data.get("state_dict", data)
    isp = RViDeNetISP()
    try:
        isp.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--isp '{path}' is not RViDeNet's ISP weights ({first})") from None
    return isp.eval()
