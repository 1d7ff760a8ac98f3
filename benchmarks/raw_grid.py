"""Where a grid in raw denoising comes from: periodic power of packed and sRGB frames, per model.

    python -m benchmarks.raw_grid --model_file logs/builtin_raw/ckpt_e4.pth logs/builtin_raw_gaussian/ckpt_e4.pth

For the simulated test scenes of the built-in clip at one ISO, the middle frame of clean, noisy and
each model's output: the mean power spectrum of the (grey) image along rows and columns at periods
of 2, 4 and 8 pixels, relative to the median power (1 = nothing special). A grid made by packing
or unpacking would show at period 2 in the sRGB image (one Bayer quad); by SRFE's 4x4 shuffles at
period 4 in the packed frames; by the classical ISP in the clean frames too. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from datasets.crvd import CRVDTestDataset
from datasets.simulated_raw import write_simulated_crvd
from engine.inference.loading import load_denoiser
from engine.inference.sequence import denoise_sequence
from utils.noise import PoissonGaussian
from utils.raw_isp import classical_isp, gray_world_gains

PERIODS = (2, 4, 8)


def periodic_power(image: np.ndarray) -> dict[str, dict[int, float]]:
    """{'rows'/'columns': {period: power at that period / median power}} of an (H,W,C) image."""
    gray = image.mean(-1)
    gray = gray - gray.mean()
    found = {}
    for axis, name in ((0, "rows"), (1, "columns")):
        power = (np.abs(np.fft.rfft(gray, axis=axis)) ** 2).mean(axis=1 - axis)
        size, median = gray.shape[axis], float(np.median(power[1:]))
        found[name] = {p: round(float(power[size // p]) / median, 2) for p in PERIODS if size % p == 0}
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_file", nargs="+", required=True)
    p.add_argument("--builtin", default="bikes")
    p.add_argument("--scenes", type=int, nargs="+", default=[7, 9], help="7: flat asphalt, 9: textured")
    p.add_argument("--iso", type=int, default=1600)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/raw_grid.json"))
    args = p.parse_args(argv)
    models = {path: load_denoiser(path, torch.device("cpu"))[0] for path in args.model_file}
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        root = write_simulated_crvd(Path(scratch), args.builtin, scenes=tuple(args.scenes), isos=(args.iso,),
                                    captures=1)
        for item in CRVDTestDataset(root, tuple(args.scenes), (args.iso,)):
            t = len(item["clean"]) // 2
            frames = {"clean": item["clean"][t], "noisy": item["noisy"][t].clamp(0, 1)}
            for path, model in models.items():
                noise = PoissonGaussian(item["a"], item["b"])
                frames[path] = denoise_sequence(model, item["noisy"], noise)[t]
            gains = gray_world_gains(item["clean"][t])
            for name, packed in frames.items():
                row = {"scene": item["scene"], "iso": args.iso, "frame": name,
                       "packed": periodic_power(packed.permute(1, 2, 0).numpy()),
                       "srgb": periodic_power(classical_isp(packed, gains))}
                results.append(row)
                print(f"scene {row['scene']} {name}: packed {row['packed']}  sRGB {row['srgb']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": results},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    main()
