"""Optical flow for STBN: the PWC-Net wrapper, clip pair flows, OpenCV DIS flow, zero flow.

Convention everywhere: a flow F for (im1, im2) backward-warps im2 onto im1, i.e.
im1(p) ~ im2(p + F(p)); channel 0 is x (horizontal), channel 1 is y, in pixels.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.pwc import PWCNet

FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FLOW_KINDS = ("pwc", "dis", "zero")
# What the flow network sees of a frame: the frame itself (RGB), or the official pseudo-RGB of a
# packed Bayer frame (see `pseudo_rgb`).
FLOW_VIEWS = ("rgb", "packed_bayer")
# Smallest frame side OpenCV's DIS handles safely (see `dis_flow`).
DIS_MIN_SIZE = 16
# Frame pairs per flow call in `pair_flows` (both directions, so 2x this many PWC flows). PWC's
# level-2 feature stack alone takes 565 channels x H/4 x W/4 floats per flow (~80 MB at 960x576),
# so a small chunk bounds memory while still filling a GPU.
DEFAULT_PAIR_CHUNK = 4


def estimate_flow(pwcnet: PWCNet, im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
    """The authors' `extract_flow_torch` without its side effects: (N,3,H,W) x2 -> (N,2,H,W).

    Both images are resized bilinearly (align_corners=False) to the next multiples of 64, PWC-Net
    runs, its 1/4-resolution, 1/20-unit flow is upsampled back to (H,W) and multiplied by 20, and
    x / y are rescaled by W/W' and H/H'. Gradients flow if enabled (the caller decides).
    """
    height, width = im1.shape[-2:]
    new_h, new_w = math.ceil(height / 64) * 64, math.ceil(width / 64) * 64
    first = F.interpolate(im1, size=(new_h, new_w), mode="bilinear", align_corners=False)
    second = F.interpolate(im2, size=(new_h, new_w), mode="bilinear", align_corners=False)
    flow = F.interpolate(pwcnet(first, second), size=(height, width), mode="bilinear",
                         align_corners=False)
    scale = flow.new_tensor([20.0 * width / new_w, 20.0 * height / new_h]).view(1, 2, 1, 1)
    return flow * scale


def pair_flows(flow_fn: FlowFn, seq: torch.Tensor,
               chunk: int = DEFAULT_PAIR_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows between neighbouring frames of a clip (N,T,C,H,W), as the authors' get_flow_2frames.

    Returns (flows_backward, flows_forward), each (N,T-1,2,H,W), with
    flows_backward[:, k] = flow(frame k, frame k+1) and flows_forward[:, k] = flow(frame k+1,
    frame k). Both directions of up to `chunk` pairs go through `flow_fn` in one batched call.
    """
    batch, frames, channels, height, width = seq.shape
    if frames < 2:  # a one-frame clip has no pairs
        empty = seq.new_zeros(batch, 0, 2, height, width)
        return empty, empty
    first = seq[:, :-1].reshape(-1, channels, height, width)
    second = seq[:, 1:].reshape(-1, channels, height, width)
    backward, forward = [], []
    for start in range(0, first.shape[0], max(1, chunk)):
        a, b = first[start:start + chunk], second[start:start + chunk]
        both = flow_fn(torch.cat([a, b]), torch.cat([b, a]))
        backward.append(both[:a.shape[0]])
        forward.append(both[a.shape[0]:])
    shape = (batch, frames - 1, 2, height, width)
    return torch.cat(backward).view(shape), torch.cat(forward).view(shape)


def _to_gray_u8(images: torch.Tensor) -> np.ndarray:
    """(N,C,H,W) float [0,1] (clipped) -> (N,H,W) uint8 luma for OpenCV; RGB channel order."""
    clipped = images.detach().float().clamp(0, 1)
    if clipped.shape[1] == 3:
        weights = clipped.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        clipped = (clipped * weights).sum(dim=1)
    else:
        clipped = clipped.mean(dim=1)
    return (clipped * 255.0).round().to(torch.uint8).cpu().numpy()


def dis_flow(im1: torch.Tensor, im2: torch.Tensor,
             preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> torch.Tensor:
    """OpenCV DIS optical flow (classical, no weights), same convention as `estimate_flow`.

    Frames are clipped to [0,1] and converted to 8-bit luma; DIS runs per pair on the CPU with
    the MEDIUM preset by default (OpenCV's balance of speed and accuracy; ULTRAFAST / FAST are
    quicker). Calling DIS(im1, im2) gives F with im1(p) ~ im2(p + F(p)). Returns float tensors
    (N,2,H,W) on the device and in the dtype of `im1`.
    """
    gray1, gray2 = _to_gray_u8(im1), _to_gray_u8(im2)
    height, width = gray1.shape[1:]
    # OpenCV's DIS fails below DIS_MIN_SIZE pixels (an error at 11x11, a segmentation fault for
    # 12-15 rows of 64 or more columns): smaller frames are edge-padded, the flow cropped back.
    pad_h, pad_w = max(0, DIS_MIN_SIZE - height), max(0, DIS_MIN_SIZE - width)
    if pad_h or pad_w:
        gray1, gray2 = (np.pad(g, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge") for g in (gray1, gray2))
    dis = cv2.DISOpticalFlow_create(preset)
    flows = np.stack([dis.calc(a, b, None)[:height, :width] for a, b in zip(gray1, gray2)])  # (N,H,W,2)
    return torch.from_numpy(flows).permute(0, 3, 1, 2).to(device=im1.device, dtype=im1.dtype)


def pseudo_rgb(packed: torch.Tensor) -> torch.Tensor:
    """The official raw model's flow input: packed (..., 4, H, W) in R, G, G, B order -> (..., 3, H, W)
    with R = channel 0, G = the mean of channels 1 and 2, B = channel 3 (linear, no white balance)."""
    return torch.stack([packed[..., 0, :, :], (packed[..., 1, :, :] + packed[..., 2, :, :]) / 2,
                        packed[..., 3, :, :]], dim=-3)


def viewed(flow_fn: FlowFn, view: str) -> FlowFn:
    """`flow_fn` applied to the frames as `view` presents them to the flow network."""
    if view == "rgb":
        return flow_fn
    if view == "packed_bayer":
        return lambda first, second: flow_fn(pseudo_rgb(first), pseudo_rgb(second))
    raise ValueError(f"unknown flow view {view!r}; expected one of {FLOW_VIEWS}")


def zero_flow(im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
    """No motion: (N,2,H,W) zeros (warping becomes the identity; the 'no alignment' ablation)."""
    return im1.new_zeros(im1.shape[0], 2, *im1.shape[-2:])


def make_flow_fn(kind: str, pwcnet: PWCNet | None = None, requires_grad: bool = False) -> FlowFn:
    """A flow function `(im1, im2) -> (N,2,H,W)` for `kind` in 'pwc' | 'dis' | 'zero'.

    For 'pwc' the network is run under `torch.no_grad()` unless `requires_grad` (the frozen
    flow network of the released model needs no graph; flow distillation does).
    """
    if kind == "zero":
        return zero_flow
    if kind == "dis":
        return dis_flow
    if kind != "pwc":
        raise ValueError(f"unknown flow kind {kind!r}; expected one of {FLOW_KINDS}")
    if pwcnet is None:
        raise ValueError("flow kind 'pwc' needs a PWCNet")

    def pwc_flow(im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(requires_grad and torch.is_grad_enabled()):
            return estimate_flow(pwcnet, im1, im2)

    return pwc_flow
