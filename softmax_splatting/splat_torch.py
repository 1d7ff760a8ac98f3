"""Summation splatting in pure PyTorch: the reference backend, on any device and float dtype.

Gradients for the input and the flow come from autograd: the bilinear weights are built from
`X - floor(X)` with the floor detached, and floor is piecewise constant, so this is the same
derivative as the CUDA kernels (upstream's q-centric form, issue #34).
"""

import torch
from torch import Tensor


def reachable_targets(tenFlow: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Target coordinates X = x + Fx, Y = y + Fy (N,H,W) and the mask of sources that reach the image.

    A source is kept when its target lies in (-1, W) x (-1, H), the only region where one of its
    4 neighbours is inside. The test is done in floating point, before any integer conversion, so
    NaN/inf flows (and huge finite ones that would overflow int64) are dropped instead of
    scattering to garbage indices (upstream issue #38). Dropped coordinates are replaced by 0 so
    that neither the forward pass nor autograd ever sees a non-finite value.
    """
    _, _, H, W = tenFlow.shape
    gy, gx = torch.meshgrid(
        torch.arange(H, device=tenFlow.device, dtype=tenFlow.dtype),
        torch.arange(W, device=tenFlow.device, dtype=tenFlow.dtype),
        indexing="ij",
    )
    X = gx + tenFlow[:, 0]
    Y = gy + tenFlow[:, 1]
    keep = (X > -1) & (X < W) & (Y > -1) & (Y < H)
    return torch.where(keep, X, 0.0), torch.where(keep, Y, 0.0), keep


def sum_splat_torch(tenIn: Tensor, tenFlow: Tensor) -> Tensor:
    """out[n,c,p] = sum over sources q of bilinear_weight(q + F(q) -> p) * tenIn[n,c,q].

    One `scatter_add_` per bilinear corner on the flattened H*W axis; corners outside the image
    get weight 0 and a clamped (harmless) index.
    """
    N, C, H, W = tenIn.shape
    X, Y, keep = reachable_targets(tenFlow)
    x0 = X.detach().floor()
    y0 = Y.detach().floor()
    frac_x, frac_y = X - x0, Y - y0
    x0, y0 = x0.long(), y0.long()
    flat_in = tenIn.reshape(N, C, H * W)
    out = tenIn.new_zeros(N, C, H * W)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            inside = keep & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            weight = (frac_x if dx else 1 - frac_x) * (frac_y if dy else 1 - frac_y)
            weight = torch.where(inside, weight, 0.0).reshape(N, 1, H * W)
            index = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).reshape(N, 1, H * W)
            out.scatter_add_(2, index.expand(N, C, H * W), flat_in * weight)
    return out.view(N, C, H, W)
