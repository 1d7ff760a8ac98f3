"""The CRVD raw-video test (behind `CRVD_test.py`): per-ISO raw PSNR/SSIM by FloRNN's protocol.

For each test sequence (ISO-major, scenes 7-11, full frames, capture `noisy0`): denoise the whole
7-frame packed clip (a Gaussian head, `--raw_loss gaussian`, through its posterior mean with the
ISO's noise parameters), clamp to [0, 1], then per frame PSNR on the packed 4-channel arrays
(data_range 1) and SSIM as the mean over the 4 packed channels (data_range 1, skimage defaults);
average over frames, then per ISO over the scenes, then over the ISOs. The noisy input (clamped)
is scored alike. (STBN's own CRVD script was edited from FloRNN's and, as published, crashes
before its metrics and never applies its ISP.) With `--isp FILE` (RViDeNet's released ISP
weights) the sRGB metrics of the conventional protocol are added: ISP of the R, G, B, G packed
frame, clipped, truncated to 8 bits, PSNR and SSIM (channel axis, data_range 1, 7x7 window);
without it the same metrics go through the classical ISP (utils/raw_isp.py), labelled as not
comparable with the paper's. `--output_png` shows one frame per ISO through the classical ISP.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from datasets.crvd import ISOS, TEST_SCENES, CRVDTestDataset
from datasets.simulated_raw import SIMULATED_SIZE, write_simulated_crvd
from datasets.video_io import write_png
from engine.commands.evaluate import write_results_json
from engine.inference.loading import DEVICE_CHOICES, FLOW_CHOICES, load_denoiser, resolve_device
from engine.inference.precision import PRECISIONS, choose_precision
from engine.inference.sequence import MEMORY_MODES, denoise_sequence
from models.isp import RViDeNetISP, load_isp, to_isp_order
from utils.errors import BOUNDED_INT, UserArgumentParser, UserError
from utils.noise import PoissonGaussian
from utils.paths import refuse_overlap
from utils.raw_isp import classical_isp, gray_world_gains


def raw_frame_metrics(den: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(PSNR, SSIM) of one packed frame (4,H,W) on [0, 1]: PSNR over all channels, SSIM averaged
    over the 4 channels, data_range 1 (FloRNN's raw metrics)."""
    d, c = den.double().numpy(), clean.double().numpy()
    psnr = peak_signal_noise_ratio(c, d, data_range=1.0)
    ssim = float(np.mean([structural_similarity(c[k], d[k], data_range=1.0) for k in range(c.shape[0])]))
    return float(psnr), ssim


def _srgb_scores(den: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR, SSIM) of two sRGB frames HxWx3 float32: clipped to [0, 1], truncated to 8 bits,
    data_range 1, SSIM over the channel axis (the conventional RViDeNet/FloRNN sRGB protocol)."""
    d, c = ((np.clip(x, 0, 1) * 255).astype(np.uint8).astype(np.float64) / 255 for x in (den, clean))
    return (float(peak_signal_noise_ratio(c, d, data_range=1.0)),
            float(structural_similarity(c, d, channel_axis=2, data_range=1.0)))


def srgb_frame_metrics(isp: RViDeNetISP, den: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(PSNR, SSIM) in sRGB: both packed frames through RViDeNet's ISP (`_srgb_scores`)."""
    with torch.no_grad():
        pair = isp(to_isp_order(torch.stack([den, clean])).float()).permute(0, 2, 3, 1).numpy()
    return _srgb_scores(pair[0], pair[1])


def classical_srgb_metrics(den: torch.Tensor, clean: torch.Tensor, gains: np.ndarray) -> tuple[float, float]:
    """(PSNR, SSIM) in sRGB through the classical ISP (utils/raw_isp.py), the same steps as the learned
    ISP's protocol; not comparable with the paper's sRGB numbers."""
    return _srgb_scores(classical_isp(den, gains), classical_isp(clean, gains))


def evaluate_crvd(model: torch.nn.Module, data: CRVDTestDataset, isp: RViDeNetISP | None = None,
                  memory: str = "auto", pictures: dict[int, tuple[float, list[np.ndarray]]] | None = None,
                  precision: torch.dtype | None = None) -> dict[str, Any]:
    """{"<iso>": {psnr, ssim, sRGB metrics, scenes: {...}}, "average": {...}} (see module).

    The sRGB metrics are `srgb_psnr`/`srgb_ssim` through RViDeNet's ISP when `isp` is given, else
    `classical_srgb_psnr`/`classical_srgb_ssim` through the classical ISP. `pictures`, when given,
    receives per ISO the middle frame of the first scene as sRGB [noisy, denoised, clean].
    """
    per_iso: dict[str, dict[str, Any]] = {}
    for item in tqdm(data, desc="CRVD test", unit="sequence", leave=False):
        denoised = denoise_sequence(model, item["noisy"], PoissonGaussian(item["a"], item["b"]), memory,
                                    precision=precision)
        if not bool(torch.isfinite(denoised).all()):
            raise UserError(f"the denoised frames of scene {item['scene']} at ISO {item['iso']} are not finite (NaN or "
                            "inf): the checkpoint is broken; nothing was written")
        frames = [raw_frame_metrics(d, c) for d, c in zip(denoised, item["clean"])]
        inputs = [raw_frame_metrics(n.clamp(0, 1), c) for n, c in zip(item["noisy"], item["clean"])]
        scores = {"psnr": float(np.mean([f[0] for f in frames])), "ssim": float(np.mean([f[1] for f in frames])),
                  "noisy_psnr": float(np.mean([f[0] for f in inputs])),
                  "noisy_ssim": float(np.mean([f[1] for f in inputs]))}
        gains = gray_world_gains(item["clean"][len(item["clean"]) // 2])
        if isp is not None:
            srgb = [srgb_frame_metrics(isp, d, c) for d, c in zip(denoised, item["clean"])]
            scores |= {"srgb_psnr": float(np.mean([f[0] for f in srgb])),
                       "srgb_ssim": float(np.mean([f[1] for f in srgb]))}
        else:
            srgb = [classical_srgb_metrics(d, c, gains) for d, c in zip(denoised, item["clean"])]
            scores |= {"classical_srgb_psnr": float(np.mean([f[0] for f in srgb])),
                       "classical_srgb_ssim": float(np.mean([f[1] for f in srgb]))}
        if pictures is not None:
            t = len(denoised) // 2
            clean_srgb = classical_isp(item["clean"][t], gains)
            texture = float(texture_energy(clean_srgb))
            if texture > pictures.get(item["iso"], (-1.0, None))[0]:
                pictures[item["iso"]] = (texture, [classical_isp(x, gains) for x in (item["noisy"][t], denoised[t])]
                                         + [clean_srgb])
        per_iso.setdefault(str(item["iso"]), {"scenes": {}})["scenes"][str(item["scene"])] = scores
    for entry in per_iso.values():
        keys = next(iter(entry["scenes"].values())).keys()
        entry.update({k: float(np.mean([s[k] for s in entry["scenes"].values()])) for k in keys})
    keys = [k for k in next(iter(per_iso.values())) if k != "scenes"]
    return {**per_iso, "average": {k: float(np.mean([e[k] for e in per_iso.values()])) for k in keys}}


def texture_energy(image: np.ndarray) -> float:
    """Mean absolute gradient (both axes) of an sRGB image (H,W,3) or a gray one (H,W): how much detail it shows."""
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    return np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()


def textured_crop(image: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """(top, left) of the `height` x `width` window of `image` with the most gradient energy."""
    gray = image.mean(axis=-1)
    energy = np.zeros_like(gray)
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    sums = energy.cumsum(0).cumsum(1)
    sums = np.pad(sums, ((1, 0), (1, 0)))
    windows = (sums[height:, width:] - sums[:-height, width:] - sums[height:, :-width] + sums[:-height, :-width])
    top, left = np.unravel_index(int(np.argmax(windows[::2, ::2])), windows[::2, ::2].shape)
    return 2 * int(top), 2 * int(left)


# The side-by-side shows a crop of this size (sRGB pixels), enlarged this many times (nearest
# neighbour, so that single noisy pixels stay visible as such).
CROP_SIZE = (64, 80)
CROP_ZOOM = 3


def write_side_by_side(pictures: dict[int, tuple[float, list[np.ndarray]]], path: str | os.PathLike) -> None:
    """One row per ISO (lowest first) of noisy | denoised | clean: the same textured crop of each,
    enlarged `CROP_ZOOM` times, as a PNG."""
    first = pictures[min(pictures)][1][2]
    height, width = min(CROP_SIZE[0], first.shape[0]), min(CROP_SIZE[1], first.shape[1])
    rows = []
    for iso in sorted(pictures):
        images = pictures[iso][1]
        top, left = textured_crop(images[2], height, width)
        crops = [x[top:top + height, left:left + width] for x in images]
        rows.append(np.concatenate([c.repeat(CROP_ZOOM, 0).repeat(CROP_ZOOM, 1) for c in crops], axis=1))
    write_png(Path(path), (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255 + 0.5).astype(np.uint8))


def build_arg_parser() -> argparse.ArgumentParser:
    p = UserArgumentParser(description="Evaluate the raw STBN model on CRVD (per-ISO raw PSNR/SSIM).")
    p.add_argument("--model_file", required=True, help="checkpoint of the raw model (the authors' or ours)")
    p.add_argument("--model", default="BR_d_c_raw", help="configuration of files that store none")
    p.add_argument("--num_resblocks", type=BOUNDED_INT, default=5)
    p.add_argument("--num_channels", type=BOUNDED_INT, default=64)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--CRVD_dir", help="CRVD root (STBN's or FloRNN's folder layout)")
    source.add_argument("--builtin", metavar="CLIP", help="simulated raw CRVD made from a built-in clip")
    p.add_argument("--builtin_size", type=BOUNDED_INT, nargs=2, default=list(SIMULATED_SIZE), metavar=("H", "W"),
                   help="raw frame size of the simulated video (even; as CRVD_train.py --builtin_size)")
    p.add_argument("--isp", help="RViDeNet's ISP weights (isp.pth in the authors' repository): adds sRGB metrics")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--flow", default="auto", choices=FLOW_CHOICES)
    p.add_argument("--memory", default="auto", choices=MEMORY_MODES)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the network's precision: fp32 (default), bf16, or auto (bf16 where native and checked)")
    p.add_argument("--results_json", help="write the numbers to this JSON file")
    p.add_argument("--output_png", help="write noisy | denoised | clean of one frame per ISO (classical ISP; a "
                                        "textured crop, enlarged) here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `CRVD_test.py` (wrap it in `utils.errors.run_cli`)."""
    args = build_arg_parser().parse_args(argv)
    if args.results_json:
        refuse_overlap(args.results_json, "--results_json", [("--CRVD_dir", args.CRVD_dir),
                                                             ("--model_file", args.model_file)])
    if args.output_png:
        refuse_overlap(args.output_png, "--output_png", [("--CRVD_dir", args.CRVD_dir),
                                                         ("--model_file", args.model_file)])
    device = resolve_device(args.device)
    model, _ = load_denoiser(args.model_file, device, args.model, args.num_resblocks, args.num_channels,
                             flow=args.flow)
    if model.config.img_channels != 4:
        raise UserError(f"--model_file '{args.model_file}' is not a raw model (it reads "
                        f"{model.config.img_channels}-channel frames; the raw model reads 4 packed channels)")
    isp = load_isp(args.isp) if args.isp else None
    with tempfile.TemporaryDirectory(prefix="stbn-crvd-") as scratch:
        root = args.CRVD_dir or write_simulated_crvd(Path(scratch), args.builtin, *args.builtin_size, captures=1)
        pictures: dict[int, tuple[float, list[np.ndarray]]] | None = {} if args.output_png else None
        data = CRVDTestDataset(root, TEST_SCENES, ISOS)
        sample = data[0] if args.precision == "auto" else None
        precision, note = choose_precision(args.precision, model, None if sample is None else sample["noisy"],
                                           None if sample is None else PoissonGaussian(sample["a"], sample["b"]))
        if args.precision != "fp32":
            print(note, flush=True)
        results = evaluate_crvd(model, data, isp, args.memory, pictures, precision)
    for iso in map(str, ISOS):
        line = (f"ISO {iso:>5}: raw PSNR {results[iso]['noisy_psnr']:.4f} -> {results[iso]['psnr']:.4f} dB, "
                f"SSIM {results[iso]['noisy_ssim']:.4f} -> {results[iso]['ssim']:.4f}")
        if isp is not None:
            line += f"; sRGB PSNR {results[iso]['srgb_psnr']:.4f} dB, SSIM {results[iso]['srgb_ssim']:.4f}"
        else:
            line += (f"; classical-ISP sRGB PSNR {results[iso]['classical_srgb_psnr']:.2f} dB, "
                     f"SSIM {results[iso]['classical_srgb_ssim']:.4f}")
        print(line, flush=True)
    average = results["average"]
    print(f"average: raw PSNR {average['noisy_psnr']:.4f} -> {average['psnr']:.4f} dB, "
          f"SSIM {average['noisy_ssim']:.4f} -> {average['ssim']:.4f} (noisy input -> denoised)", flush=True)
    if isp is None:
        print("(classical-ISP sRGB numbers are for orientation only, not comparable with the paper's, which use "
              "RViDeNet's ISP: pass --isp FILE)", flush=True)
    if args.results_json:
        write_results_json(args.results_json, results)
    if args.output_png:
        write_side_by_side(pictures, args.output_png)
        print(f"side by side (noisy | denoised | clean; rows ISO {ISOS[0]}..{ISOS[-1]}; classical ISP; the most "
              f"textured scene, a {CROP_SIZE[1]}x{CROP_SIZE[0]} crop shown x{CROP_ZOOM}): {args.output_png}",
              flush=True)
    return 0
