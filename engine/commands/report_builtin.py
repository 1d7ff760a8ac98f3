"""Show what a trained checkpoint does on a built-in clip: noisy vs denoised PSNR/SSIM and a picture.

The last step of main.sh's demo: the held-out frames of the clip (never seen in training) get the
official test noise, are denoised with the posterior mean, and are scored with the official
per-frame metrics; one middle frame is written as a side-by-side PNG (noisy | denoised | clean).
The network is the configuration the checkpoint stores.

Usage: python -m engine.commands.report_builtin --model_file logs/builtin/ckpt_e8.pth [--builtin bikes]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from datasets.builtin import builtin_split
from datasets.eval_sequences import to_unit_float
from datasets.video_io import write_png
from engine.commands.evaluate import to_png_uint8, write_results_json
from engine.inference.loading import (
    DEVICE_CHOICES,
    load_denoiser,
    resolve_device,
)
from engine.inference.scoring import score_sequence
from utils.errors import UserArgumentParser, UserError, run_cli
from utils.metrics import sequence_psnr, sequence_ssim
from utils.noise import parse_sigma, unit_sigma


def side_by_side(noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """(3,H,3W) image noisy | denoised | clean, noisy clipped to [0, 1] for display only."""
    return torch.cat([noisy.clamp(0, 1), denoised, clean], dim=2)


def report_builtin(model_file: str, clip: str = "bikes", sigma: float = 30.0, device: str = "auto",
                   max_frames: int | None = None, output_png: str | None = None,
                   results_json: str | None = None) -> dict[str, Any]:
    """Denoise the held-out frames of `clip` at `sigma` (0-255 scale) and print/return the scores."""
    model, _ = load_denoiser(model_file, resolve_device(device))  # the configuration the checkpoint stores
    _, held_out = builtin_split(clip)
    clean = to_unit_float(held_out[:max_frames])
    middle = clean.shape[0] // 2
    kept: dict[int, torch.Tensor] = {}
    noisy, score = score_sequence(model, clean, unit_sigma(sigma),
                                  on_frame=lambda t, frame: kept.update({t: frame}) if t == middle else None)
    result = {"clip": clip, "sigma": sigma, "frames": score.frames, "flow": model.config.flow,
              "noisy": {"psnr": sequence_psnr(noisy.clamp(0, 1), clean),
                        "ssim": sequence_ssim(noisy.clamp(0, 1), clean)},
              "denoised": {"psnr": score.psnr, "ssim": score.ssim}}
    gain = result["denoised"]["psnr"] - result["noisy"]["psnr"]
    print(f"{clip}: {result['frames']} held-out frames of {clean.shape[3]}x{clean.shape[2]}, sigma {sigma:g}, "
          f"flow {model.config.flow}")
    for name in ("noisy", "denoised"):
        print(f"  {name:9s} PSNR {result[name]['psnr']:6.2f} dB   SSIM {result[name]['ssim']:.4f}")
    print(f"  gain      {gain:+6.2f} dB")
    if output_png:
        write_png(Path(output_png), to_png_uint8(side_by_side(noisy[middle], kept[middle], clean[middle])))
        print(f"side by side (noisy | denoised | clean), frame {middle}: {output_png}")
    if results_json:
        write_results_json(results_json, result)
    return result


def build_arg_parser() -> argparse.ArgumentParser:
    p = UserArgumentParser(description="Noisy vs denoised scores of a checkpoint on a built-in clip.")
    p.add_argument("--model_file", required=True, help="a checkpoint (ours or the authors')")
    p.add_argument("--builtin", default="bikes", metavar="CLIP", help="built-in clip (held-out part)")
    p.add_argument("--sigma", default="30", help="noise level on the 0-255 scale")
    p.add_argument("--max_frames", type=int, help="first N held-out frames (default all)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--output_png", help="write a side-by-side PNG here")
    p.add_argument("--results_json", help="write the scores here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max_frames must be at least 1, got {args.max_frames}")
    report_builtin(args.model_file, args.builtin, parse_sigma(args.sigma, "--sigma"), args.device,
                   args.max_frames, args.output_png, args.results_json)
    return 0


if __name__ == "__main__":
    run_cli(main)
