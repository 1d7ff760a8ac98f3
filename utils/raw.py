"""Raw (Bayer) video as the official CRVD pipeline handles it: packing, levels, 12-bit quantisation.

CRVD frames are 12-bit GBRG mosaics stored in 16-bit TIFFs. They are packed into 4 channels at
half resolution in the official order R, G, G, B (R and the first G from the odd rows, the second G
and B from the even rows), normalised by the black level 240 and the white level 4095 (no upper
clamp), and the raw model is trained with the plain blind-spot loss against its noisy input.
"""
from __future__ import annotations

import torch
from skimage.metrics import peak_signal_noise_ratio

BLACK_LEVEL = 240
WHITE_LEVEL = 4095
RAW_RANGE = WHITE_LEVEL - BLACK_LEVEL  # 3855


def pack_gbrg(mosaic: torch.Tensor) -> torch.Tensor:
    """(..., H, W) GBRG mosaic, H and W even -> (..., 4, H/2, W/2) in R, G, G, B order."""
    if mosaic.shape[-1] % 2 or mosaic.shape[-2] % 2:
        raise ValueError(f"a Bayer mosaic needs an even size, got {tuple(mosaic.shape[-2:])}")
    return torch.stack([mosaic[..., 1::2, 0::2], mosaic[..., 1::2, 1::2],
                        mosaic[..., 0::2, 0::2], mosaic[..., 0::2, 1::2]], dim=-3)


def unpack_gbrg(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_gbrg`: (..., 4, h, w) in R, G, G, B order -> (..., 2h, 2w) GBRG mosaic."""
    if packed.shape[-3] != 4:
        raise ValueError(f"expected 4 packed channels, got {tuple(packed.shape)}")
    *lead, _, h, w = packed.shape
    mosaic = packed.new_empty(*lead, 2 * h, 2 * w)
    mosaic[..., 1::2, 0::2], mosaic[..., 1::2, 1::2] = packed[..., 0, :, :], packed[..., 1, :, :]
    mosaic[..., 0::2, 0::2], mosaic[..., 0::2, 1::2] = packed[..., 2, :, :], packed[..., 3, :, :]
    return mosaic


def normalize_raw(raw: torch.Tensor) -> torch.Tensor:
    """12-bit values -> float32 on [0, 1]: minus the black level, clamped below at 0, over 3855."""
    return (raw.float() - BLACK_LEVEL).clamp_(min=0) / RAW_RANGE


def quantise_12bit(x: torch.Tensor) -> torch.Tensor:
    """The official validation rounding (RViDeNet's): clamp to [0, 1], back to 12-bit integers by
    truncation (x * 3855 + 240 as uint16), and normalised again."""
    levels = (x.clamp(0, 1).float() * RAW_RANGE + BLACK_LEVEL).to(torch.int32)  # truncation, as uint16
    return (levels.float() - BLACK_LEVEL) / RAW_RANGE


def validation_psnr(den: torch.Tensor, clean: torch.Tensor) -> float:
    """The official raw validation score of one packed frame (4,H,W): PSNR (data_range 1, skimage)
    of the 12-bit quantised output against the clean frame, on the float32 arrays."""
    return float(peak_signal_noise_ratio(clean.float().numpy(), quantise_12bit(den).numpy(), data_range=1.0))


def blind_spot_mse(out: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """The official raw loss: sum of squared differences to the noisy input over 2N (N clips)."""
    return ((noisy - out) ** 2).sum() / (2 * out.shape[0])
