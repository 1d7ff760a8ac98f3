"""Run a convolutional block over horizontal bands of a frame, with the same numbers, in less memory.

A stack of convolutions changes an output pixel only through inputs within its receptive-field
radius, so a band of rows computed from the band plus `halo` rows above and below (zero padding
only at the true image border, as before) equals the same rows of the whole-frame result. A
960x540 frame at 64 or 128 channels takes 127-253 MiB per feature map; in bands, the block's
intermediate maps shrink with the band while the result is written into one full-size output.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

BandFn = Callable[[list[torch.Tensor]], torch.Tensor]


def conv_radius(module: nn.Module) -> int:
    """Upper bound of the receptive-field radius (pixels) of a chain of convolutions in `module`.

    Sums dilation * (kernel - 1) / 2 over every Conv2d: exact for a plain chain, an upper bound
    where residual skips bypass some convolutions (a larger halo costs time, never accuracy).
    """
    radius = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            radius += max(d * (k - 1) // 2 for d, k in zip(layer.dilation, layer.kernel_size))
    return radius


def band_rows(height: int, width: int, max_pixels: int | None, halo: int) -> int:
    """Rows per band so that a band with its halo holds at most about `max_pixels` pixels.

    All rows if `max_pixels` is None; otherwise the fewest bands that fit, of equal height (so no
    thin last band pays a full halo), at least one row each.
    """
    if max_pixels is None:
        return height
    widest = max(1, max_pixels // max(1, width) - 2 * halo)
    bands = -(-height // widest)
    return -(-height // bands)


def map_row_bands(fn: BandFn, parts: Sequence[torch.Tensor], halo: int, rows: int) -> torch.Tensor:
    """`fn(parts)` (N,*,H,W tensors -> N,C,H,W) computed band by band of `rows` rows; same result.

    Each band is read with `halo` rows of context on either side (clipped at the frame) and only
    its own rows are kept. One band covering the frame calls `fn` on the whole parts.
    """
    height = parts[0].shape[-2]
    if rows >= height:
        return fn(list(parts))
    out = None
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        lo, hi = max(0, top - halo), min(height, bottom + halo)
        band = fn([part[..., lo:hi, :] for part in parts])
        if out is None:
            out = torch.empty((*band.shape[:-2], height, band.shape[-1]), dtype=band.dtype,
                              device=band.device, memory_format=memory_format_of(band))
        out[..., top:bottom, :] = band[..., top - lo:bottom - lo, :]
        del band
    return out


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D channels-last tensor, else contiguous_format (to allocate alike)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
