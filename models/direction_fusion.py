"""Registry of the blocks that merge the forward and backward states of a frame (official `d`).

`StbnConfig.direction_fusion` names one of them. Each takes the state width F and is called as
`block(h_forward, h_backward) -> (B,F,H,W)`. A block plugged in here sees blind-spot features:
it may mix channels freely but must only combine pixels at even offsets (1x1 convolutions,
3x3 convolutions with dilation 2, SRFE's shuffles), or the output would see its own noisy pixel.
The shared tests (blind spot, bounded == one pass, checkpoint round trip) run over every entry.
"""
from __future__ import annotations

from torch import nn

from models.fusion_dilated import DilatedDirectionFusion
from models.fusion_pixelwise import PixelwiseDirectionFusion
from models.srfe import SRFE

DIRECTION_FUSIONS: dict[str, type[nn.Module]] = {
    "srfe": SRFE,  # the released model
    "pixelwise": PixelwiseDirectionFusion,  # the paper's "without SRFE" ablation
    "dilated": DilatedDirectionFusion,
}


def build_direction_fusion(name: str, channels: int) -> nn.Module:
    """The registered block `name` for states of `channels` features."""
    if name not in DIRECTION_FUSIONS:
        raise ValueError(f"unknown direction fusion {name!r}; expected one of {', '.join(DIRECTION_FUSIONS)}")
    return DIRECTION_FUSIONS[name](channels)
