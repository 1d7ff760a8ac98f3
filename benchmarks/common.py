"""What every benchmark records next to its numbers: the commit, the machine, the date, timings.

Numbers without the code version and the hardware that produced them cannot be compared later, so
each result file carries `run_record()`; timings are summarised as min / median / max.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def git_commit() -> str:
    """HEAD's hash, with '-dirty' when tracked files differ from it ('unknown' outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO_ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux, else `platform.processor()`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch build and thread count, and the GPU when there is one."""
    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_record() -> dict[str, Any]:
    """Commit, machine and UTC date of this run."""
    return {"commit": git_commit(), "machine": machine_info(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def timing_summary(seconds: list[float]) -> dict[str, float]:
    """min / median / max of repeated timings, in seconds."""
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)}


def timed(fn: Callable[[], T], repeats: int = 1) -> tuple[T, dict[str, float]]:
    """Run `fn` `repeats` times; (its last result, `timing_summary` of the wall-clock seconds)."""
    seconds = []
    result = None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, timing_summary(seconds)
