"""Spatial Receptive Field Expansion (official `SRFE`, from CAIN/PUCA): fuses the forward and
backward features of one frame over a large neighbourhood without breaking the blind spot.

Both features are shuffled down by `shuffle_down` (4x4 blocks: the stride-2 sub-lattice bit goes
into channels, the inner 2x2 position stays spatial), fused by dilated 3x3 convolutions in that
domain, and shuffled back. A dilation-2 step there is 4 original pixels and channel mixing joins
pixels 2 apart, so only even-even offsets are combined, which a blind-spot input tolerates.

Module names follow the official checkpoint: `encoder.interpolate.{headConv, body, tailConv}`,
`body.{g}.body.{j}.body.body.{0,2}`. The official `Encoder`/`Decoder` hold only the shufflers;
the decoder has no parameters, so it is a plain function here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blind_spot import DilatedConvPair
from models.tiling import memory_format_of

# SRFE works on 4x4 blocks: inputs are zero-padded (bottom/right) to multiples of this.
BLOCK = 4


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def shuffle_down(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Official `Downsample(2)`: (B,C,H,W) -> (B,4C,H/2,W/2), H and W multiples of 4.

    out[b, 4c + 2n + m, 2a + h, 2e + w] = in[b, c, 4a + 2n + h, 4e + 2m + w] for n, m, h, w in {0,1}.
    One copy, into `out` when given (any strided view of that shape, e.g. a channel slice of a
    larger buffer); a new output takes the input's layout (channels-last stays channels-last).
    """
    b, c, height, width = x.shape
    if out is None:
        out = torch.empty((b, 4 * c, height // 2, width // 2), dtype=x.dtype, device=x.device,
                          memory_format=memory_format_of(x))
    blocks = x.reshape(b, c, height // 4, 2, 2, width // 4, 2, 2)  # b c a n h e m w
    out.view(b, c, 2, 2, height // 4, 2, width // 4, 2).copy_(blocks.permute(0, 1, 3, 6, 2, 4, 5, 7))
    return out


def shuffle_up(x: torch.Tensor) -> torch.Tensor:
    """Official `Upsample(2)`, the exact inverse of `shuffle_down`: (B,4C,H',W') -> (B,C,2H',2W')."""
    b, c4, height, width = x.shape
    c = c4 // 4
    blocks = x.reshape(b, c, 2, 2, height // 2, 2, width // 2, 2)  # b c n m a h e w
    if _is_channels_last(x):
        rows = blocks.permute(0, 4, 2, 5, 6, 3, 7, 1).reshape(b, 2 * height, 2 * width, c)
        return rows.permute(0, 3, 1, 2)
    return blocks.permute(0, 1, 4, 2, 5, 6, 3, 7).reshape(b, c, 2 * height, 2 * width)


class ResidualDilatedBlock(nn.Module):
    """x + body(x) with a grouped (groups=2) dilated conv pair: the official `RCAB`.

    Despite its official name it has no channel attention. Residual sums are accumulated in
    place into the fresh body output, here and in `ResidualGroup`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = DilatedConvPair(channels, dilation=2, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)


class ResidualGroup(nn.Module):
    """`n_resblocks` blocks with a skip around the group (official `ResidualGroup`)."""

    def __init__(self, channels: int, n_resblocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[ResidualDilatedBlock(channels) for _ in range(n_resblocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)


class ShuffledFusion(nn.Module):
    """Official `fusion`: headConv (2F -> F, dilated 3x3), residual groups, tailConv.

    The paper's figure draws a skip around the residual groups; the code (and so this) has none,
    and tailConv has no activations between its three convolutions.
    """

    def __init__(self, n_feats: int, n_resgroups: int = 2, n_resblocks: int = 8) -> None:
        super().__init__()
        self.headConv = nn.Conv2d(2 * n_feats, n_feats, 3, padding=2, dilation=2)
        self.body = nn.Sequential(*[ResidualGroup(n_feats, n_resblocks) for _ in range(n_resgroups)])
        self.tailConv = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=2, dilation=2),
            nn.Conv2d(n_feats, n_feats, 1),
            nn.Conv2d(n_feats, n_feats, 1),
        )

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """`pair` is the channel concatenation [shuffled forward, shuffled backward]."""
        return self.after_head(self.headConv(pair))

    def after_head(self, features: torch.Tensor) -> torch.Tensor:
        """Everything after headConv, so a caller can drop the (largest) pair buffer once it is read."""
        return self.tailConv(self.body(features))


class SRFEEncoder(nn.Module):
    """Official `Encoder`: holds the fusion as `interpolate` (the shuffler has no weights)."""

    def __init__(self, in_channels: int, n_resgroups: int = 2, n_resblocks: int = 8) -> None:
        super().__init__()
        self.interpolate = ShuffledFusion(in_channels * 4, n_resgroups, n_resblocks)


class SRFE(nn.Module):
    """SRFE(in_channels) (depth 1): (forward, backward) features (B,C,H,W) -> fused (B,C,H,W)."""

    def __init__(self, in_channels: int = 64) -> None:
        super().__init__()
        self.encoder = SRFEEncoder(in_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Pad both to multiples of 4 (bottom/right zeros), shuffle, fuse, shuffle back, crop.

        Shuffling commutes with channel concatenation (channels of x2 land after those of x1),
        so each input is shuffled straight into its half of one buffer: no full-size pair copy.
        """
        if x1.shape != x2.shape:
            raise ValueError(f"SRFE needs equal shapes, got {tuple(x1.shape)} and {tuple(x2.shape)}")
        b, c, height, width = x1.shape
        pad_h, pad_w = -height % BLOCK, -width % BLOCK
        pair = torch.empty((b, 8 * c, (height + pad_h) // 2, (width + pad_w) // 2),
                           dtype=torch.promote_types(x1.dtype, x2.dtype), device=x1.device,
                           memory_format=memory_format_of(x1))
        for half, x in enumerate((x1, x2)):
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h))
            shuffle_down(x, pair[:, half * 4 * c:(half + 1) * 4 * c])
        fusion = self.encoder.interpolate
        features = fusion.headConv(pair)
        del pair
        return shuffle_up(fusion.after_head(features))[..., :height, :width]
