"""Peak host memory (RSS) of sequence denoising: one-pass vs bounded, for several clip lengths.

Each case runs in a fresh subprocess (so peaks do not mix) and reports `ru_maxrss` of that process,
plus the memory held before denoising (torch, model, noisy clip) so the denoiser's own share shows.
Default: the released configuration (64 channels) at 960x540 with 10, 40 and 85 frames, bounded
path only (the one-pass path needs about 25 GB there); this takes a long time on a small CPU
(85 frames: peak 2619 MiB, about 1.6 h on a shared 2-core CPU, benchmarks/results/memory_peak_960x540.txt).

    python -m benchmarks.memory_peak                       # 960x540, bounded, 10/40/85 frames
    python -m benchmarks.memory_peak --small               # 128x224, 16 channels, both paths
    python -m benchmarks.memory_peak --height 136 --width 240 --frames 10 40 --paths full bounded \
        --state_budget_mb 64                                # the bound at a size a laptop runs quickly
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from engine.inference.sequence import DEFAULT_STATE_BUDGET
from utils.noise import unit_sigma

MIB = 1024 * 1024
# The two paths compute the same numbers; their output sums may differ by rounding only.
MAX_PATH_DIFFERENCE = 1e-5


def _rss_mib() -> float:
    """Peak RSS of this process so far in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


def run_case(frames: int, height: int, width: int, channels: int, path: str, flow: str,
             state_budget: int, device: str = "cpu") -> dict:
    """Denoise one random clip in this process; returns its timings and memory peaks (host RSS,
    and the CUDA allocator's peak on a GPU). The noisy clip stays in host memory, as in evaluation."""
    from engine.inference.sequence import denoise_frames, stored_states
    from models import build_model

    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=channels, flow=flow).to(device).eval()
    noisy = torch.rand(frames, 3, height, width)
    before = _rss_mib()
    start = time.perf_counter()
    checksum = 0.0
    for _, frame in denoise_frames(model, noisy, unit_sigma(30), memory=path, state_budget=state_budget):
        checksum += float(frame.double().sum())
    seconds = time.perf_counter() - start
    gpu_peak = torch.cuda.max_memory_allocated() / MIB if device == "cuda" else None
    return {"frames": frames, "path": path, "seconds": seconds, "before_mib": before, "peak_mib": _rss_mib(),
            "gpu_peak_mib": gpu_peak,
            "kept_states": stored_states(model, noisy[0], frames, state_budget) if path == "bounded" else frames,
            "checksum": checksum}


def _spread(values: list[float], fmt: str) -> str:
    return "/".join(format(v, fmt) for v in (values[0], statistics.median(values), values[-1]))


def _spawn(frames: int, args: argparse.Namespace, path: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.memory_peak", "--case", str(frames), "--height", str(args.height),
               "--width", str(args.width), "--num_channels", str(args.num_channels), "--paths", path,
               "--flow", args.flow, "--threads", str(args.threads), "--state_budget_mb", str(args.state_budget_mb),
               "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"frames": frames, "path": path, "error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[10, 40, 85])
    p.add_argument("--height", type=int, default=540)
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--num_channels", type=int, default=64)
    p.add_argument("--paths", nargs="+", default=["bounded"], choices=("full", "bounded"))
    p.add_argument("--flow", default="dis", choices=("dis", "zero"),
                   help="flow between frames (PWC-Net costs the same in both paths; DIS needs no weights)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--state_budget_mb", type=float, default=DEFAULT_STATE_BUDGET / MIB,
                   help="memory for kept hidden states on the bounded path")
    p.add_argument("--repeats", type=int, default=1, help="runs per case (min/median/max)")
    p.add_argument("--small", action="store_true", help="128x224, 16 channels, 4/8/16 frames, both paths")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: the model on the GPU; also reports the CUDA allocator's peak")
    p.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: CUDA is not available", file=sys.stderr)
        return 2
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.height, args.width, args.num_channels, args.paths[0], args.flow,
                                  int(args.state_budget_mb * MIB), args.device)))
        return 0
    if args.small:
        args.height, args.width, args.num_channels = 128, 224, 16
        args.frames, args.paths = [4, 8, 16], ["full", "bounded"]
    print(f"peak RSS, {args.width}x{args.height}, {args.num_channels} channels, flow {args.flow}, "
          f"state budget {args.state_budget_mb:g} MiB, "
          f"{args.threads} threads, one fresh process per run, {args.repeats} run(s) per case", flush=True)
    gpu = args.device == "cuda"
    print(f"{'path':>8} {'frames':>6} {'kept':>5} {'before MiB':>10} {'peak MiB min/med/max':>22} "
          f"{'s/frame min/med/max':>22}" + (f" {'GPU peak MiB':>13}" if gpu else ""), flush=True)
    added: dict[tuple[str, int], float] = {}
    checksums: dict[tuple[str, int], float] = {}
    for path in args.paths:
        for frames in args.frames:
            runs = [_spawn(frames, args, path) for _ in range(args.repeats)]
            failed = [r for r in runs if "error" in r]
            if failed:
                print(f"{path:>8} {frames:>6}  failed: {failed[0]['error']}", flush=True)
                continue
            peaks = sorted(r["peak_mib"] for r in runs)
            per_frame = sorted(r["seconds"] / frames for r in runs)
            before = statistics.median(r["before_mib"] for r in runs)
            added[(path, frames)] = statistics.median(peaks) - before
            checksums[(path, frames)] = runs[0]["checksum"]
            gpu_peak = f" {max(r['gpu_peak_mib'] for r in runs):>13.0f}" if gpu else ""
            print(f"{path:>8} {frames:>6} {runs[0]['kept_states']:>5} {before:>10.0f} "
                  f"{_spread(peaks, '.0f'):>22} {_spread(per_frame, '.2f'):>22}{gpu_peak}", flush=True)
    for path in args.paths:
        sizes = [f for f in args.frames if (path, f) in added]
        if len(sizes) > 1:
            print(f"{path}: memory added by denoising, {sizes[-1]} frames / {sizes[0]} frames = "
                  f"{added[(path, sizes[-1])] / max(added[(path, sizes[0])], 1e-9):.2f}", flush=True)
    mismatch = False
    for frames in [f for f in args.frames if ("full", f) in added and ("bounded", f) in added]:
        full, bounded = checksums[("full", frames)], checksums[("bounded", frames)]
        relative = abs(full - bounded) / max(abs(full), 1e-12)
        mismatch |= relative > MAX_PATH_DIFFERENCE
        print(f"{frames} frames: full / bounded added memory = "
              f"{added[('full', frames)] / max(added[('bounded', frames)], 1e-9):.2f}; "
              f"output sums differ by {relative:.1e} (relative)", flush=True)
    if mismatch:
        print(f"error: the one-pass and bounded outputs differ by more than {MAX_PATH_DIFFERENCE:g}", file=sys.stderr)
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
