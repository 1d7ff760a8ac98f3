"""Shared timing helpers for the benchmark scripts: repeat a call, report min / median / max."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device | None = None,
               warmup: int = 1) -> list[float]:
    """Seconds per call of `fn` over `repeats` runs after `warmup` runs (CUDA synchronised)."""
    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def summary(label: str, times: list[float], unit: str = "s") -> str:
    """One line: label, min / median / max in seconds or milliseconds."""
    scale = 1e3 if unit == "ms" else 1.0
    lo, mid, hi = (scale * v for v in (min(times), statistics.median(times), max(times)))
    return f"{label:<34} min {lo:9.3f} {unit}  median {mid:9.3f} {unit}  max {hi:9.3f} {unit}"
