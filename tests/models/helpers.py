"""Test helpers for receptive-field (blind-spot) checks."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def positive_weights_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a small positive random value (in place).

    With positive inputs every ReLU stays active, so the gradient of an output is non-zero
    exactly on its structural receptive field and a zero gradient means "not connected".
    Masks (`mask` buffers) are untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        fan_in = param[0].numel() if param.dim() > 1 else 1
        param.copy_(torch.rand(param.shape, generator=generator) / fan_in + 0.01)
    return module
