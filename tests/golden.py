"""Access to the parity vectors made from the authors' code, and their weight fill rule.

The vectors live in tests/data/golden/ (copied from the reference pack so that a fresh clone
can run them); `STBN_GOLDEN_DIR` overrides the folder. Tests skip when the files are absent.
See tests/data/golden/README.md for what each vector holds.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn

GOLDEN_DIR = Path(os.environ.get("STBN_GOLDEN_DIR", Path(__file__).parent / "data" / "golden"))


def _golden_file(name: str) -> Path:
    path = GOLDEN_DIR / name
    if not path.is_file():
        pytest.skip(f"golden file {path} not found (set STBN_GOLDEN_DIR)")
    return path


def load_golden() -> dict[str, torch.Tensor]:
    """The tensors of stbn_golden.pt (skips the calling test when the file is missing)."""
    return torch.load(_golden_file("stbn_golden.pt"), map_location="cpu", weights_only=True)


def load_reference_keys() -> list[tuple[str, tuple[int, ...], str]]:
    """Every state-dict entry of the official model in order: (key, shape, 'param'|'buffer')."""
    with open(_golden_file("stbn_state_dict_keys.json")) as handle:
        entries = json.load(handle)["state_dict"]
    return [(key, tuple(shape), kind) for key, shape, kind in entries]


def fill_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The golden fill rule: randn seeded by crc32(key), scaled by 1/sqrt(fan) (or 0.1 for 1-D)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    value = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) > 1:
        return value / math.sqrt(value.numel() / shape[0])
    return value * 0.1


@torch.no_grad()
def fill_official(module: nn.Module, prefix: str = "", zero_prefixes: tuple[str, ...] = (),
                  gain: float = 1.0) -> None:
    """Fill `module`'s state dict in place by the golden rule.

    `prefix` is prepended to each key to form the official name that seeds the generator (e.g.
    `'pwcnet.'` for a standalone PWCNet); official names starting with one of `zero_prefixes`
    are set to zero (the `stbn_*` vectors use `('pwcnet.',)`); `*.mask` buffers keep their value.
    `gain` further scales every filled tensor with more than one dimension (the training vectors'
    `weight_gain`).
    """
    for key, tensor in module.state_dict().items():
        official = prefix + key
        if official.endswith(".mask"):
            continue
        if zero_prefixes and official.startswith(zero_prefixes):
            tensor.zero_()
        else:
            tensor.copy_(fill_value(official, tuple(tensor.shape)) * (gain if tensor.dim() > 1 else 1.0))
