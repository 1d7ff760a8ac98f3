"""bf16 autocast vs float32 in evaluation: how far the denoised frames and their PSNR move.

Denoises the held-out frames of a built-in clip (the official test noise) with the same model in
float32 and under bf16 autocast (the Gaussian algebra stays float32 either way) and prints both
PSNRs against the clean frames, their difference and the largest pixel difference. Without
`--model_file` the released configuration has random weights: the numbers then show the numerical
effect only. Needs a device where bf16 is native (CUDA, or a CPU with avx512_bf16 / amx_bf16).

    python -m benchmarks.precision [--device cuda] [--model_file CKPT] [--clip bikes] [--frames 8]
"""
from __future__ import annotations

import argparse

import torch

from datasets.builtin import builtin_split
from datasets.eval_sequences import to_unit_float
from engine.inference.loading import load_denoiser, resolve_device
from engine.inference.sequence import denoise_sequence
from engine.train.step import amp_supported
from models import build_model
from utils.errors import UserError
from utils.metrics import sequence_psnr
from utils.noise import add_test_noise, unit_sigma


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model_file", help="checkpoint (default: released configuration, random weights)")
    parser.add_argument("--clip", default="bikes")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=30.0)
    parser.add_argument("--num_channels", type=int, default=64, help="width of the random-weight model")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if not amp_supported(device):
        raise UserError(f"bf16 is not native on {device}; run on CUDA or a CPU with avx512_bf16 / amx_bf16")
    if args.model_file:
        model, _ = load_denoiser(args.model_file, device, flow="dis")
    else:
        torch.manual_seed(0)
        model = build_model("bdc_2_unify", num_channels=args.num_channels, flow="dis").to(device).eval()
    _, held_out = builtin_split(args.clip)
    clean = to_unit_float(held_out[:args.frames])
    sigma = unit_sigma(args.sigma)
    noisy = add_test_noise(clean, sigma)
    fp32 = denoise_sequence(model, noisy, sigma, memory="full")
    with torch.autocast(device.type, dtype=torch.bfloat16):
        bf16 = denoise_sequence(model, noisy, sigma, memory="full")
    psnr32, psnr16 = sequence_psnr(fp32, clean), sequence_psnr(bf16, clean)
    print(f"{args.clip}, {clean.shape[0]} frames {clean.shape[3]}x{clean.shape[2]}, sigma {args.sigma:g}, "
          f"{device}, {'checkpoint ' + args.model_file if args.model_file else 'random weights'}")
    print(f"float32 PSNR {psnr32:.4f} dB, bf16 autocast PSNR {psnr16:.4f} dB, change {psnr16 - psnr32:+.4f} dB, "
          f"max |difference| {(bf16 - fp32).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
