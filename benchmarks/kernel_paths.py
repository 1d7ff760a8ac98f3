"""Which path each custom kernel takes on a device: CuPy (checked against PyTorch once) or PyTorch.

    python -m benchmarks.kernel_paths --device cuda

Runs the cost volume and the sum splat once per dtype (float32, and bf16 for the cost volume, as
under autocast), then prints `utils.kernel_check.kernel_verdicts()`; on the CPU, or where CuPy is
missing, every kernel runs in PyTorch and there is nothing to check.
"""
from __future__ import annotations

import argparse

import torch

from models.cost_volume import cost_volume
from softmax_splatting import splat
from utils.kernel_check import kernel_verdicts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(parser.parse_args(argv).device)
    for dtype in (torch.float32, torch.bfloat16):
        first = torch.randn(1, 16, 12, 16, device=device, dtype=dtype)
        cost_volume(first, torch.randn_like(first))
    values = torch.randn(1, 3, 12, 16, device=device)
    splat(values, torch.randn(1, 2, 12, 16, device=device), mode="avg")
    verdicts = kernel_verdicts()
    if not verdicts:
        print(f"{device}: no CuPy kernel in use (PyTorch path everywhere)")
    for what, path in verdicts.items():
        print(f"{what}: {'CuPy kernel (agrees with PyTorch)' if path == 'cupy' else 'PyTorch path (kernel disagreed)'}")


if __name__ == "__main__":
    main()
