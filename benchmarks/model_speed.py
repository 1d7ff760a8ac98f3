"""STBN eval-mode speed: frames/s and effective GFLOP/s, ours vs an official-like layout.

For each model config (released: 64 channels, 5 blocks; small: 16 channels, 2 blocks) and frame
size, it times `model(seqn, noise_map)` under torch.inference_mode (PWC-Net flows included) and
prints min / median / max seconds, frames/s and GFLOP/s. FLOPs are counted once per shape by
torch.utils.flop_counter on a 'meta' copy of the model (convolutions, matmuls), so they cost no
compute. Variants alternate within each repeat. The "official layout" row runs the same model with
NCHW tensors and the output stage one frame at a time, as the authors' code does; the ratio of
medians comes from the same run.
With CUDA, a bf16 autocast row is added (the Gaussian algebra stays float32 regardless).

    python -m benchmarks.model_speed [--configs released,small] [--sizes 256x256,960x540]
        [--frames 3] [--repeats 3] [--device auto|cpu|cuda] [--threads N] [--no-baseline]

On a CPU shared with other jobs, --threads 1 gives steadier numbers (per core).
"""
from __future__ import annotations

import argparse
import copy
import statistics
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import summary, time_calls
from engine.inference.precision import bf16_native
from models import build_model
from models.stbn import OUTPUT_CHUNK_PIXELS, STBN
from utils.errors import UserError
from utils.noise import unit_sigma

CONFIGS = {"released": dict(num_channels=64, num_resblocks=5),
           "small": dict(num_channels=16, num_resblocks=2)}


def count_flops(model: STBN, shape: tuple[int, ...]) -> tuple[int, int]:
    """(total, flow network) FLOPs of one forward on a clip of `shape`, counted on 'meta'."""
    meta = copy.deepcopy(model).to("meta")
    clip = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        meta(clip, clip)
    per_module = counter.get_flop_counts()
    flow = sum(per_module.get(f"{type(meta).__name__}.pwcnet", {}).values())
    return counter.get_total_flops(), flow


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--sizes: {text!r} is not WIDTHxHEIGHT") from None
    return height, width


BF16_LABEL = "ours + bf16 autocast"
OFFICIAL_LABEL = "official layout (NCHW, per frame)"


def _variants(model: STBN, device: torch.device, baseline: bool):
    """(label, setup, context, output chunk pixels) to time on the same model."""
    def ours() -> None:
        model.set_memory_format(torch.channels_last)

    def official_layout() -> None:
        model.set_memory_format(torch.contiguous_format)

    rows = [("ours (channels-last, batched)", ours, nullcontext, OUTPUT_CHUNK_PIXELS)]
    if bf16_native(device):  # CUDA, or a CPU with avx512_bf16 / AMX (emulated bf16 would only be slower)
        rows.append((BF16_LABEL, ours, lambda: torch.autocast(device.type, dtype=torch.bfloat16), OUTPUT_CHUNK_PIXELS))
    if baseline:  # one frame per SRFE/head call
        rows.append((OFFICIAL_LABEL, official_layout, nullcontext, 1))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="released,small")
    parser.add_argument("--sizes", default="256x256,960x540", help="WIDTHxHEIGHT list")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: leave the default)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the official-layout row")
    args = parser.parse_args(argv)
    if args.threads < 0:
        raise UserError(f"--threads: must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          args.device if args.device != "auto" else "cpu")
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise UserError(f"--configs: unknown {unknown}; known: {', '.join(CONFIGS)}")

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"STBN eval forward incl. PWC flows, {args.frames} frames, {args.repeats} repeats, "
          f"{where}, torch {torch.__version__}")
    for name in configs:
        torch.manual_seed(0)
        model = build_model("bdc_2_unify", **CONFIGS[name]).to(device).eval()
        for size in args.sizes.split(","):
            height, width = _parse_size(size)
            shape = (1, args.frames, 3, height, width)
            flops, flow_flops = count_flops(model, shape)
            pixels = args.frames * height * width
            print(f"\n{name} {width}x{height}: {flops / pixels / 1e6:.2f} MFLOP per pixel and frame "
                  f"({flow_flops / pixels / 1e6:.2f} of them PWC-Net)")
            clip = torch.rand(shape, device=device)
            noise_map = torch.full_like(clip, unit_sigma(30))
            variants = _variants(model, device, args.baseline)
            times: dict[str, list[float]] = {label: [] for label, *_ in variants}
            # Variants alternate within each repeat, so drifting load on a shared machine hits
            # them alike.
            for repeat in range(args.repeats + 1):
                for label, setup, context, chunk in variants:
                    setup()

                    def run() -> None:
                        with torch.inference_mode(), context():
                            model(clip, noise_map, output_chunk_pixels=chunk)

                    elapsed = time_calls(run, 1, device, warmup=0)
                    if repeat:  # the first round is the warm-up
                        times[label] += elapsed
            medians = {label: statistics.median(values) for label, values in times.items()}
            for label, values in times.items():
                print(summary(label, values) + f"  | {args.frames / medians[label]:7.3f} frames/s"
                      f"  {flops / medians[label] / 1e9:7.1f} GFLOP/s")
            first = next(iter(medians))
            for label, value in list(medians.items())[1:]:
                print(f"  median time {label} / {first}: {value / medians[first]:.2f}x")
            if BF16_LABEL in medians and OFFICIAL_LABEL in medians:
                print(f"eval bf16 ours/official fp32: {medians[OFFICIAL_LABEL] / medians[BF16_LABEL]:.2f}x")
            elif BF16_LABEL not in medians:
                print(f"  (no bf16 row: bf16 is not native on this {device.type})")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli
    run_cli(main)
