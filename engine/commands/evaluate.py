"""The official sRGB test protocol (Set8 / DAVIS), behind `sRGB_test.py`.

For each sigma and each sequence, exactly as the authors' sRGB test script (ZKCCZ/STBN): seed 0 before
the sequence, unclipped CPU Gaussian noise over the whole sequence, whole-sequence bidirectional
denoising, Gaussian posterior mean, clamp to [0, 1], per-frame skimage PSNR / SSIM averaged over
the frames, then over the sequences. Denoised frames are written as PNG (rounded as torchvision's
`save_image` does) and the numbers optionally as JSON. Metrics and PNGs are computed frame by frame
as frames finish, so the bounded-memory path never holds the whole output.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from datasets.builtin import builtin_names, builtin_split
from datasets.eval_sequences import EvalSequenceDataset, to_unit_float
from datasets.video_io import frame_name, remove_earlier_frames, write_png
from engine.inference.loading import ALIGN_CHOICES, DEVICE_CHOICES, FLOW_CHOICES, load_denoiser, resolve_device
from engine.inference.precision import PRECISIONS, choose_precision
from engine.inference.prior_scale import fit_prior_scale
from engine.inference.scoring import score_frames, score_sequence
from engine.inference.sequence import MEMORY_MODES
from engine.train.finetune import DEFAULT_PATCH_SIZE, DEFAULT_TRAIN_LENGTH, finetune_on_video
from utils.atomic import atomic_path
from utils.errors import BOUNDED_INT, UserArgumentParser, UserError, official_bool, warn
from utils.gaussian import PriorScale
from utils.json_text import strict_json
from utils.metrics import SSIM_WINDOW
from utils.noise import add_test_noise, parse_sigma, unit_sigma
from utils.noise_estimate import estimate_noise_sigma
from utils.paths import refuse_overlap

# STBN_s defaults: the training recipe's rate (paper), clips per step and crops (engine/train/finetune.py).
FINETUNE_LR = 1e-4
FINETUNE_BATCH = 4


def build_arg_parser() -> argparse.ArgumentParser:
    """Official arguments with their defaults, plus device / flow / memory / output options."""
    p = UserArgumentParser(description="Evaluate STBN on Set8-style folders with the official protocol.")
    official = p.add_argument_group("official arguments (defaults as the authors' script)")
    official.add_argument("--model", default="bdc_2_unify", help="bdc_2_unify (= stbn) or bdc_flow")
    official.add_argument("--num_resblocks", type=BOUNDED_INT, default=5, help="residual units in the fusion blocks")
    official.add_argument("--model_file", required=True, help="checkpoint: the authors' release or ours")
    official.add_argument("--test_path", help="one sub-folder of frames per sequence (e.g. Set8)")
    official.add_argument("--max_num_fr_per_seq", type=BOUNDED_INT, default=85, help="first N frames of each sequence")
    official.add_argument("--noise_sigmas", nargs="*", default=["30"], metavar="SIGMA",
                          help="noise levels on the 0-255 scale (several allowed)")
    official.add_argument("--display_time", nargs="?", const=True, default=False, type=official_bool,
                          help="print the time per frame (denoising + PNG writing)")
    extra = p.add_argument_group("additional options")
    extra.add_argument("--builtin", metavar="CLIPS",
                       help="evaluate on the held-out frames of built-in clips (bikes, carphone; several "
                            "separated by commas, or all), one sequence each")
    extra.add_argument("--num_channels", type=BOUNDED_INT, default=64, help="hidden feature width")
    extra.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    extra.add_argument("--output_dir", default="output", help="denoised PNG frames, one folder per sequence")
    extra.add_argument("--no_save", action="store_true", help="do not write denoised frames")
    extra.add_argument("--results_json", help="write the numbers to this JSON file")
    extra.add_argument("--pwc_weights", help="PWC-Net weights (authors' file or an STBN checkpoint)")
    extra.add_argument("--flow", default="auto", choices=FLOW_CHOICES,
                       help="auto: PWC-Net when the checkpoint or --pwc_weights has its weights, else DIS")
    extra.add_argument("--align", choices=ALIGN_CHOICES,
                       help="hidden-state warp (default: as the checkpoint was trained; nearest for the "
                            "authors' file); BSA/SRFE switches are always read from the checkpoint")
    extra.add_argument("--finetune", type=BOUNDED_INT, default=0, metavar="N",
                       help="STBN_s: before each sequence, N self-supervised Adam steps on that sequence's "
                            "protocol noisy frames (float, unclipped), starting from the checkpoint every time")
    extra.add_argument("--finetune_lr", type=float, default=FINETUNE_LR,
                       help="Adam learning rate of --finetune (default: the paper's training rate 1e-4)")
    extra.add_argument("--sigma_estimate", action="store_true",
                       help="also estimate sigma blindly from each noisy sequence (as denoise.py --sigma auto) "
                            "and report the PSNR/SSIM denoising with that estimate gives (a second pass)")
    extra.add_argument("--prior_scale_fit", action="store_true",
                       help="also fit the prior scale to each noisy sequence (as denoise.py --prior_scale auto, "
                            "engine/inference/prior_scale.py) and report the PSNR/SSIM of that posterior "
                            "(a second pass)")
    extra.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="the network's precision: fp32 (default: the official protocol, bit for bit), bf16, "
                            "or auto (bf16 where native and checked on the first frames)")
    extra.add_argument("--memory", default="auto", choices=MEMORY_MODES,
                       help="full: one pass (memory grows with frames); bounded: streaming, same numbers")
    return p


def _validate(args: argparse.Namespace) -> list[tuple[str, float]]:
    """Check the arguments early; returns (key as given, sigma on the 0-255 scale), duplicates dropped."""
    if (args.test_path is None) == (args.builtin is None):
        raise UserError("give exactly one of --test_path DIR (one sub-folder of frames per sequence) "
                        "or --builtin CLIP")
    if args.test_path is not None and not Path(args.test_path).is_dir():
        raise UserError(f"--test_path: '{args.test_path}' is not an existing folder")
    if args.max_num_fr_per_seq < 1:
        raise UserError(f"--max_num_fr_per_seq must be at least 1, got {args.max_num_fr_per_seq}")
    if args.finetune < 0:
        raise UserError(f"--finetune must be 0 or more steps, got {args.finetune}")
    if not (math.isfinite(args.finetune_lr) and args.finetune_lr > 0):
        raise UserError(f"--finetune_lr must be a positive number, got {args.finetune_lr}")
    if not args.noise_sigmas:
        raise UserError("--noise_sigmas: give at least one noise level (e.g. 30)")
    sigmas: dict[str, float] = {}
    for key in args.noise_sigmas:
        if key in sigmas:
            warn(f"--noise_sigmas: {key} given twice; evaluated once")
        sigmas[key] = parse_sigma(key, "--noise_sigmas")
    if not args.no_save:
        refuse_overlap(args.output_dir, "--output_dir", [("--test_path", args.test_path)])
    if args.results_json:
        refuse_overlap(args.results_json, "--results_json", [("--test_path", args.test_path),
                                                             ("--model_file", args.model_file)])
        _require_writable_parent(Path(args.results_json), "--results_json")
    return list(sigmas.items())


def _require_writable_parent(path: Path, what: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if path.is_dir():
        raise UserError(f"{what}: '{path}' is a folder")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: cannot write into '{existing}'")


def test_sequences(args: argparse.Namespace) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, clean float32 (T,3,H,W)) pairs: the folders of --test_path, or a built-in clip's held-out part."""
    if args.builtin:
        return [(name, to_unit_float(builtin_split(name)[1][:args.max_num_fr_per_seq]))
                for name in builtin_names(args.builtin)]
    return EvalSequenceDataset(args.test_path, max_num_fr_per_seq=args.max_num_fr_per_seq)


def to_png_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3,H,W) float in [0, 1] -> HxWx3 uint8, rounded as torchvision's save_image (x*255 + 0.5)."""
    scaled = frame.detach().float().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return scaled.permute(1, 2, 0).numpy()


def _make_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder '{folder}': {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"output folder '{folder}' is not writable")
    return folder


def _frames_folder(args: argparse.Namespace, sigma_key: str, name: str, several_sigmas: bool) -> Path | None:
    """output_dir/<seq>/ for one sigma; output_dir/sigma<S>/<seq>/ when several would overwrite each other."""
    if args.no_save:
        return None
    root = Path(args.output_dir) / f"sigma{sigma_key}" if several_sigmas else Path(args.output_dir)
    return _make_folder(root / name)


def evaluate_sequence(model: torch.nn.Module, clean: torch.Tensor, sigma_255: float, memory: str = "auto",
                      frames_folder: Path | None = None, progress: tqdm | None = None,
                      finetune: dict[str, Any] | None = None, name: str = "sequence",
                      sigma_estimate: bool = False, prior_scale_fit: bool = False,
                      precision: torch.dtype | None = None) -> dict[str, Any]:
    """One sequence of the protocol at noise level `sigma_255` (0-255 scale). Returns psnr, ssim, frames, seconds.

    `finetune` (STBN_s, `finetune_on_video` options) first trains the model on this sequence's
    protocol noisy frames; the caller restores the weights afterwards. `seconds` covers denoising
    and PNG writing, as the official timing does, not the fine-tuning or the metrics.
    `sigma_estimate` also estimates sigma blindly from the noisy frames (`estimate_noise_sigma`)
    and denoises them a second time with it: `sigma_estimated`, `psnr_estimated_sigma`, `ssim_estimated_sigma`.
    `prior_scale_fit` fits the prior's colour matrix to the noisy frames (`fit_prior_scale`) and
    scores that posterior: `prior_scale_fitted` (3x3, row by row), `psnr_fitted_prior`, `ssim_fitted_prior`.
    """
    def record(t: int, denoised: torch.Tensor) -> None:
        if frames_folder is not None:
            write_png(frames_folder / frame_name(t), to_png_uint8(denoised))
        if progress is not None:
            progress.update(1)

    adapt = None
    if finetune:
        def adapt(noisy: torch.Tensor) -> None:
            finetune_on_video(model, noisy.numpy(), unit_sigma(sigma_255), desc=f"fine-tuning {name}", **finetune)
    noisy, score = score_sequence(model, clean, unit_sigma(sigma_255), memory, on_frame=record, adapt=adapt,
                                  precision=precision)
    if frames_folder is not None:
        remove_earlier_frames(frames_folder, score.frames)
    result = {"psnr": score.psnr, "ssim": score.ssim, "frames": score.frames, "seconds": score.seconds}
    if sigma_estimate:
        try:
            estimate = estimate_noise_sigma(noisy.permute(0, 2, 3, 1).numpy())
        except ValueError as exc:
            raise UserError(f"--sigma_estimate: sequence '{name}': {exc}") from None
        result |= {"sigma_estimated": estimate * 255.0,
                   **_second_pass(model, noisy, clean, max(estimate, 1e-6), memory, 1.0, "estimated_sigma",
                                  precision)}
    if prior_scale_fit:
        scale = fit_prior_scale(model, noisy, unit_sigma(sigma_255))
        result |= {"prior_scale_fitted": scale.tolist(),
                   **_second_pass(model, noisy, clean, unit_sigma(sigma_255), memory, scale, "fitted_prior",
                                  precision)}
    return result


def _second_pass(model: torch.nn.Module, noisy: torch.Tensor, clean: torch.Tensor, sigma: float, memory: str,
                 prior_scale: PriorScale, key: str, precision: torch.dtype | None = None) -> dict[str, float]:
    """`psnr_<key>` and `ssim_<key>` of denoising once more with another sigma or prior scale."""
    score = score_frames(model, noisy, clean, sigma, memory, prior_scale, precision=precision)
    return {f"psnr_{key}": score.psnr, f"ssim_{key}": score.ssim}


# Second passes: (option, what it fits, JSON key of the fitted value, key of its scores, label).
SECOND_PASSES = (("sigma_estimate", "sigma_estimated", "estimated_sigma", "estimated sigma"),
                 ("prior_scale_fit", "prior_scale_fitted", "fitted_prior", "fitted prior scale"))


def _fitted_label(value: float | list[list[float]]) -> str:
    """A fitted sigma as a number, a fitted colour matrix by its eigenvalues (its scales)."""
    if isinstance(value, list):
        return "(eigenvalues " + " ".join(f"{v:.2f}" for v in np.linalg.eigvalsh(np.array(value))) + ")"
    return f"{value:.2f}"


def _sigma_label(sigma: float) -> str:
    return f"{sigma:g}"


def _evaluate_sigma(model, sequences, args, sigma_key: str, sigma: float, several: bool,
                    precision: torch.dtype | None = None) -> dict[str, Any]:
    """All sequences at one sigma, printing the official per-sequence and summary lines."""
    print(f"sigma={_sigma_label(sigma)}", flush=True)
    root_name = Path(args.test_path).name if args.test_path else "builtin"
    results: dict[str, Any] = {}
    total_frames, total_seconds = 0, 0.0
    finetune = finetune_options(args)
    checkpoint_weights = copy.deepcopy(model.state_dict()) if finetune else None
    for name, clean in sequences:
        if min(clean.shape[-2:]) < SSIM_WINDOW:
            raise UserError(f"sequence '{name}': frames are {clean.shape[-1]}x{clean.shape[-2]}; the official "
                            f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
        with tqdm(total=clean.shape[0], desc=f"{name} (sigma {_sigma_label(sigma)})", unit="frame",
                  file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
            folder = _frames_folder(args, sigma_key, name, several)
            result = evaluate_sequence(model, clean, sigma, args.memory, folder, bar, finetune, name,
                                       args.sigma_estimate, args.prior_scale_fit, precision)
        if checkpoint_weights is not None:  # every sequence starts from the checkpoint
            model.load_state_dict(checkpoint_weights)
        results[name] = result
        label = f"{root_name}/{name}"
        print("{:50}:, PSNR: {:.4f}dB, SSIM: {:.4f}".format(label, result["psnr"], result["ssim"]), flush=True)
        for option, fitted, key, label in SECOND_PASSES:
            if getattr(args, option):
                print(f"{'':50}   {label} {_fitted_label(result[fitted])}: "
                      f"PSNR {result['psnr_' + key]:.4f}dB, SSIM {result['ssim_' + key]:.4f}", flush=True)
        total_frames += result["frames"]
        total_seconds += result["seconds"]
        if args.display_time:
            print(f"frames: {total_frames:d}, time/frame: {total_seconds / total_frames:6.4f} s", flush=True)
    psnr = float(sum(r["psnr"] for r in results.values()) / len(results))
    ssim = float(sum(r["ssim"] for r in results.values()) / len(results))
    print(f"sigma {_sigma_label(sigma)}, PSNR: {psnr:6.4f}, SSIM: {ssim:6.4f}", flush=True)
    summary = {"psnr": psnr, "ssim": ssim, "precision": "bf16" if precision is not None else "fp32",
               "sequences": results}
    for option, fitted, key, label in SECOND_PASSES:
        if getattr(args, option):
            for name in ("psnr_" + key, "ssim_" + key):
                summary[name] = float(sum(r[name] for r in results.values()) / len(results))
            summary[fitted] = np.mean([r[fitted] for r in results.values()], axis=0).tolist()
            print(f"sigma {_sigma_label(sigma)}, {label} {_fitted_label(summary[fitted])} on average: PSNR "
                  f"{summary['psnr_' + key]:6.4f} ({summary['psnr_' + key] - psnr:+.4f} dB), SSIM "
                  f"{summary['ssim_' + key]:6.4f}", flush=True)
    if finetune:
        summary["finetune"] = finetune
    return summary


def finetune_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The STBN_s settings (`finetune_on_video` keywords) of --finetune, None without it."""
    if not args.finetune:
        return None
    return {"iterations": args.finetune, "lr": args.finetune_lr, "batch_size": FINETUNE_BATCH,
            "patch_size": DEFAULT_PATCH_SIZE, "train_length": DEFAULT_TRAIN_LENGTH, "seed": 0}


def write_results_json(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    with atomic_path(path, "--results_json") as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(strict_json(results), encoding="utf-8")


def format_table(results: dict[str, Any]) -> str:
    """The summary over all sigmas: one row per sigma, in the order evaluated."""
    lines = [f"{'sigma':>8}  {'PSNR':>8}  {'SSIM':>7}"]
    lines += [f"{key:>8}  {r['psnr']:8.4f}  {r['ssim']:7.4f}" for key, r in results.items()]
    return "\n".join(lines)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the protocol for every sigma; returns {sigma key: {psnr, ssim, sequences: {name: ...}}}."""
    sigmas = _validate(args)
    device = resolve_device(args.device)
    model, _ = load_denoiser(args.model_file, device, args.model, args.num_resblocks, args.num_channels,
                             args.pwc_weights, args.flow, args.align)
    if model.config.img_channels != 3:
        raise UserError(f"--model_file '{args.model_file}' is a raw model ({model.config.img_channels} packed Bayer "
                        "channels): evaluate it with CRVD_test.py")
    sequences = test_sequences(args)
    sample = None
    if args.precision == "auto":  # the check denoises the first sequence's protocol noise both ways
        _, first = next(iter(sequences))
        sample = add_test_noise(first, unit_sigma(sigmas[0][1]))
    precision, note = choose_precision(args.precision, model, sample, unit_sigma(sigmas[0][1]))
    if args.precision != "fp32":
        print(note, flush=True)
    results: dict[str, Any] = {}
    for key, sigma in sigmas:
        results[key] = _evaluate_sigma(model, sequences, args, key, sigma, len(sigmas) > 1, precision)
    print(format_table(results), flush=True)
    if not args.no_save:
        print(f"denoised frames: {args.output_dir}", flush=True)
    if args.results_json:
        write_results_json(args.results_json, results)
        print(f"results: {args.results_json}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sRGB_test.py` (wrap it in `utils.errors.run_cli`)."""
    evaluate(build_arg_parser().parse_args(argv))
    return 0
