"""Speed of forward splatting: PyTorch on CPU, and CuPy vs PyTorch on CUDA when available.

Run: python -m benchmarks.splatting [--repeats 5] [--size 1 64 540 960] [--mode avg]
Prints min/median/max seconds per call (forward, and forward+backward) and, on CUDA, the ratio
PyTorch/CuPy of the medians measured in the same run.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from softmax_splatting import parse_mode, splat
from softmax_splatting.splat_cupy import cupy_splat_available
from utils.errors import UserError, run_cli


def time_calls(fn: Callable[[], None], repeats: int, device: torch.device) -> list[float]:
    """Seconds per call after one warm-up call (which also compiles the CuPy kernels)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def summary(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{label:<36} min {min(times) * 1e3:9.2f} ms  median {median * 1e3:9.2f} ms  max {max(times) * 1e3:9.2f} ms")
    return median


def bench_device(device: torch.device, size: list[int], mode: str, repeats: int) -> None:
    N, C, H, W = size
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(N, C, H, W, generator=generator).to(device)
    flow = (torch.randn(N, 2, H, W, generator=generator) * 4).to(device)
    metric = torch.rand(N, 1, H, W, generator=generator).to(device) if mode in ("soft", "linear") else None
    backends = ["torch"] + (["cupy"] if device.type == "cuda" and cupy_splat_available(device.index or 0) else [])
    medians = {}
    for backend in backends:
        def forward() -> None:
            with torch.no_grad():
                splat(image, flow, metric, mode=mode, backend=backend)

        def forward_backward() -> None:
            leaves = image.detach().requires_grad_(), flow.detach().requires_grad_()
            splat(*leaves, metric, mode=mode, backend=backend).sum().backward()

        medians[backend, "fwd"] = summary(f"{device.type} {backend} {mode} forward",
                                          time_calls(forward, repeats, device))
        medians[backend, "bwd"] = summary(f"{device.type} {backend} {mode} forward+backward",
                                          time_calls(forward_backward, repeats, device))
    if "cupy" in backends:
        for phase in ("fwd", "bwd"):
            print(f"ratio torch/cupy ({phase}): {medians['torch', phase] / medians['cupy', phase]:.2f}x")
    elif device.type == "cuda":
        print("CuPy unavailable: CUDA numbers are PyTorch only")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=4, default=[1, 64, 540, 960], metavar=("N", "C", "H", "W"))
    parser.add_argument("--mode", default="avg", help="splat mode (default: avg, the --align softsplat mode)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA measurements")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.size) < 1:
        raise UserError("--repeats and every --size value must be at least 1")
    try:
        parse_mode(args.mode)
    except ValueError as exc:
        raise UserError(f"--mode: {exc}") from None
    print(f"size {args.size}, float32, {args.repeats} repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    bench_device(torch.device("cpu"), args.size, args.mode, args.repeats)
    if torch.cuda.is_available() and not args.cpu_only:
        bench_device(torch.device("cuda", torch.cuda.current_device()), args.size, args.mode, args.repeats)
    return 0


if __name__ == "__main__":
    run_cli(main)
