"""PSNR and colour against seconds for the default model as denoise.py runs it, by fine-tuning steps.

    python -m benchmarks.finetune_curve --clips bunny carphone --sigma 25 --steps 0 40 160 400 1000

Each point is a fresh run from the shipped weights, exactly as `denoise.py --finetune N` does it
(sigma estimated, denoise.py's crops, prior colour matrix fitted, low-frequency anchor), on held-out
frames of a built-in clip with the official noise; seconds cover fine-tuning and denoising. Writes JSON and a plot.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import run_record
from benchmarks.quality import clip_frames
from benchmarks.quality_report import plt, write_json
from benchmarks.scoring import noisy_clip, score
from benchmarks.stbn_rows import SmallSTBN, anchored, stbn_denoise, stbn_finetune_denoise
from engine.inference.anchor import DEFAULT_ANCHOR_PX
from engine.inference.loading import DEFAULT_MODEL_FILE, load_denoiser
from engine.train.finetune import VIDEO_BATCH_SIZE, VIDEO_PATCH_SIZE, VIDEO_TRAIN_LENGTH
from utils.noise import unit_sigma
from utils.noise_estimate import estimate_noise_sigma

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="+", default=["bunny", "carphone"])
    p.add_argument("--sigma", type=float, default=25.0, help="0-255 scale")
    p.add_argument("--steps", type=int, nargs="+", default=[0, 40, 160, 400, 1000])
    p.add_argument("--crop", type=int, nargs=2, default=[144, 176], metavar=("H", "W"))
    p.add_argument("--max_frames", type=int, default=8)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "finetune_curve")
    args = p.parse_args(argv)
    crops = SmallSTBN(batch_size=VIDEO_BATCH_SIZE, patch_size=VIDEO_PATCH_SIZE, train_length=VIDEO_TRAIN_LENGTH)
    rows = []
    for clip in args.clips:
        _, clean = clip_frames(clip, tuple(args.crop), args.max_frames)
        noisy = noisy_clip(clean, unit_sigma(args.sigma))
        for steps in args.steps:
            model = load_denoiser(DEFAULT_MODEL_FILE, torch.device("cpu"))[0]
            start = time.perf_counter()
            sigma = estimate_noise_sigma(noisy)
            out = anchored(stbn_finetune_denoise(model, noisy, sigma, steps, crops, None) if steps
                           else stbn_denoise(model, noisy, sigma, None), noisy, DEFAULT_ANCHOR_PX, sigma)
            seconds = time.perf_counter() - start
            rows.append({"clip": clip, "sigma": args.sigma, "steps": steps, "seconds": seconds,
                         "frames": int(clean.shape[0]), **score(out, clean)})
            print(f"{clip} sigma {args.sigma:g}: {steps:5d} steps {seconds:7.1f} s  PSNR {rows[-1]['psnr']:.2f} dB  "
                  f"chroma error {rows[-1]['chroma_error']:.2f}", flush=True)
    write_json(args.out / "finetune_curve.json", {"record": run_record(), "settings": vars(args), "rows": rows})
    figure, axis = plt.subplots(figsize=(6, 4))
    for clip in args.clips:
        points = [r for r in rows if r["clip"] == clip]
        axis.plot([r["seconds"] for r in points], [r["psnr"] for r in points], "o-", label=clip)
        for r in points:
            axis.annotate(str(r["steps"]), (r["seconds"], r["psnr"]), fontsize=7)
    axis.set_xlabel("seconds (fine-tuning + denoising)")
    axis.set_ylabel("PSNR (dB)")
    axis.set_title(f"default model as denoise.py runs it, sigma {args.sigma:g}; labels: fine-tuning steps", fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "finetune_curve.png", dpi=90)
    print(f"wrote {args.out / 'finetune_curve.json'} and .png")
    return 0


if __name__ == "__main__":
    main()
