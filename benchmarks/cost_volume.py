"""Cost-volume speed at PWC-Net's pyramid levels for one 960x576 frame pair.

Prints min / median / max seconds per call (forward, or forward+backward with --backward) of
the PyTorch path (banded matmuls) and of the plain 81-shifted-products formulation it replaced,
on the CPU and, when CUDA is available, on the GPU together with the CuPy kernel; ratios are
medians measured in the same run.

    python -m benchmarks.cost_volume [--repeats 10] [--batch 1] [--backward]
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.timing import summary, time_calls
from models.cost_volume import cost_volume_torch
from models.pwc import PYRAMID_CHANNELS
from utils.errors import UserError, run_cli

FRAME_H, FRAME_W = 576, 960


def shifted_products(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Baseline: the definition written directly, one channel-wide product per displacement."""
    height, width = first.shape[-2:]
    padded = F.pad(second, [4] * 4)
    return torch.stack([(first * padded[:, :, dy:dy + height, dx:dx + width]).mean(dim=1)
                        for dy in range(9) for dx in range(9)], dim=1)


def _call(impl: Callable, first: torch.Tensor, second: torch.Tensor, backward: bool) -> Callable[[], object]:
    if not backward:
        def forward_only():
            with torch.no_grad():
                return impl(first, second)
        return forward_only
    a, b = first.clone().requires_grad_(), second.clone().requires_grad_()

    def forward_backward():
        impl(a, b).sum().backward()
    return forward_backward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1, help="frame pairs per call")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        raise UserError("--repeats and --batch must be at least 1")

    devices = [torch.device("cpu")] + ([torch.device("cuda", torch.cuda.current_device())]
                                    if torch.cuda.is_available() else [])
    kind = "forward+backward" if args.backward else "forward"
    print(f"cost volume, {kind}, batch {args.batch}, frame {FRAME_W}x{FRAME_H}, "
          f"{args.repeats} repeats, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for device in devices:
        if device.type == "cuda":
            from models.cost_volume import _CupyCostVolume, cupy_cost_volume_available
            have_cupy = cupy_cost_volume_available(device.index)
            print(f"GPU: {torch.cuda.get_device_name(device)}; CuPy {'available' if have_cupy else 'missing'}")
        for level in range(2, 7):
            channels = PYRAMID_CHANNELS[level - 1]
            shape = (args.batch, channels, FRAME_H >> level, FRAME_W >> level)
            gen = torch.Generator().manual_seed(level)
            first = torch.randn(shape, generator=gen).to(device)
            second = torch.randn(shape, generator=gen).to(device)
            label = f"{device.type} L{level} {channels}x{shape[2]}x{shape[3]}"
            torch_times = time_calls(_call(cost_volume_torch, first, second, args.backward), args.repeats, device)
            base_times = time_calls(_call(shifted_products, first, second, args.backward), args.repeats, device)
            print(summary(label + " torch", torch_times, unit="ms"))
            print(summary(label + " shifted", base_times, unit="ms")
                  + f"  shifted/torch {statistics.median(base_times) / statistics.median(torch_times):.2f}x")
            if device.type == "cuda" and have_cupy:
                cupy_times = time_calls(_call(_CupyCostVolume.apply, first, second, args.backward),
                                        args.repeats, device)
                print(summary(label + " cupy", cupy_times, unit="ms")
                      + f"  torch/cupy {statistics.median(torch_times) / statistics.median(cupy_times):.2f}x")
    return 0


if __name__ == "__main__":
    run_cli(main)
