"""Denoise a user's video or frame folder (behind `denoise.py`), optionally fine-tuning on it first.

Any frame size works (the network pads internally: PWC-Net to multiples of 64, SRFE to multiples
of 4, and crops back). Gray frames are denoised as RGB with the gray value in all three channels
and turned back into gray by averaging; 16-bit frames are read on [0, 1] with full precision and
written back as 16-bit to frame folders. The output keeps the input's frame count, size and rate.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.eval_sequences import UINT8_TO_UNIT
from datasets.video_io import check_writable_output, read_video, write_video
from engine.commands.denoise_raw import add_raw_arguments, denoise_raw
from engine.inference.anchor import DEFAULT_ANCHOR_PX, anchor_low_frequencies
from engine.inference.loading import (
    ALIGN_CHOICES,
    DEFAULT_MODEL_FILE,
    DEVICE_CHOICES,
    FLOW_CHOICES,
    load_denoiser,
    refuse_training_checkpoint,
    resolve_device,
    save_denoiser,
)
from engine.inference.precision import CHECK_FRAMES, PRECISIONS, choose_precision
from engine.inference.prior_scale import (
    AUTO,
    FIT_FRAMES,
    PriorFitFailed,
    fit_prior_scale,
    format_prior_scale,
    parse_prior_scale,
)
from engine.inference.sequence import MEMORY_MODES, checked_frames
from engine.train.finetune import (
    DEFAULT_MODEL_FINETUNE_STEPS,
    VIDEO_BATCH_SIZE,
    VIDEO_PATCH_SIZE,
    VIDEO_TRAIN_LENGTH,
    finetune_on_video,
)
from utils.errors import UserArgumentParser, UserError, int_in_range, warn
from utils.noise import parse_sigma, unit_sigma
from utils.noise_estimate import correlated_noise_sigma, estimate_noise_sigma
from utils.paths import refuse_overlap, require_regular_input

AUTO_SIGMA = "auto"
# Beyond this range (0-255 scale) an estimate says the input is unlike what the models train on.
USUAL_SIGMA_RANGE = (1.0, 60.0)
# The most optimisation steps an option accepts (far beyond any real run; stops absurd values early).
MAX_STEPS = 10 ** 9
# Blurs wider than this take the output's whole colour from the noisy input.
MAX_ANCHOR_PX = 1000
# With a --finetune time budget, the step count the sampler is sized for (the budget ends it first).
BUDGET_MAX_STEPS = 10 ** 5


class VideoFrames(Sequence[torch.Tensor]):
    """Stored frames (T,H,W,C) uint8/uint16, C = 1 or 3, seen as float32 RGB (3,H,W) on [0, 1].

    Frames are converted one at a time, so only the compact stored video stays in memory. 8-bit
    values map exactly as the evaluation reads them (`np.float32(x / 255.)`).
    """

    def __init__(self, frames: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8/uint16 frames (T,H,W,1|3), got {frames.dtype} {frames.shape}")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> torch.Tensor:
        frame = self.frames[t]
        unit = UINT8_TO_UNIT[frame] if frame.dtype == np.uint8 else (frame / 65535.0).astype(np.float32)
        rgb = torch.from_numpy(unit).permute(2, 0, 1)
        return (rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb).contiguous()

    def rgb_uint8(self) -> np.ndarray:
        """The video as uint8 RGB (T,3,H,W), as the training sampler wants it (16 bits rounded to 8)."""
        frames = self.frames
        if frames.dtype == np.uint16:
            frames = ((frames.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(frames, (*frames.shape[:3], 3)).transpose(0, 3, 1, 2))


def to_stored_format(frame: torch.Tensor, dtype: np.dtype, channels: int) -> np.ndarray:
    """Denoised (3,H,W) on [0, 1] -> HxWxC in the input's dtype (gray: mean of the three channels)."""
    if channels == 1:
        frame = frame.mean(dim=0, keepdim=True)
    top = 255.0 if dtype == np.uint8 else 65535.0
    scaled = frame.permute(1, 2, 0).double().numpy() * top + 0.5
    return np.clip(scaled, 0, top).astype(dtype)


def build_arg_parser() -> argparse.ArgumentParser:
    p = UserArgumentParser(description="Denoise a video file or a folder of frames with STBN.")
    p.add_argument("input", help="video file (.mp4/.avi/.mov/.mkv), frame folder or image")
    p.add_argument("-o", "--output", required=True,
                   help="video file (by extension) or folder for PNG frames")
    p.add_argument("--sigma", default=AUTO_SIGMA,
                   help="noise level on the 0-255 scale (e.g. 30), or auto (default): estimated from the "
                        "input (utils/noise_estimate.py) and printed")
    p.add_argument("--prior_scale", default=None,
                   help="sRGB: calibration S of the prior's covariance (S^T A^T A S) in the posterior: auto "
                        "(default) fits a 3x3 colour matrix to the input by maximum likelihood (self-supervised, "
                        "engine/inference/prior_scale.py) and prints it; 1 = the model's own, as the official "
                        "test does; a "
                        "number k = k times the identity; nine comma-separated numbers = a matrix as printed")
    p.add_argument("--model_file", default=None,
                   help="checkpoint: the authors' release or ours (default: the small blind model that ships "
                        f"in {DEFAULT_MODEL_FILE.parent.name}/{DEFAULT_MODEL_FILE.name}, trained on the built-in "
                        "clips)")
    p.add_argument("--model", default="bdc_2_unify", help="bdc_2_unify (= stbn) or bdc_flow")
    p.add_argument("--num_resblocks", type=int_in_range(0, 1024), default=5)
    p.add_argument("--num_channels", type=int_in_range(2, 1 << 14), default=64)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--flow", default="auto", choices=FLOW_CHOICES,
                   help="auto: PWC-Net when the checkpoint or --pwc_weights has its weights, else DIS")
    p.add_argument("--pwc_weights", help="PWC-Net weights (authors' file or an STBN checkpoint)")
    p.add_argument("--align", choices=ALIGN_CHOICES,
                   help="hidden-state warp (default: as the checkpoint was trained; nearest for the "
                        "authors' file); BSA/SRFE switches are always read from the checkpoint")
    p.add_argument("--lowfreq_anchor", type=float, default=None, metavar="PX",
                   help="sRGB: take the output's local means from the input (Gaussian blur of PX pixels; the noisy "
                        "input is unbiased there, a small model's prior mean is not: removes its colour cast, "
                        "engine/inference/anchor.py); 0 = off; default "
                        f"{DEFAULT_ANCHOR_PX:g} with the default model, 0 with any other")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the network's precision: auto (default: bf16 where the hardware computes it natively "
                        "and a check on the first frames finds no visible difference, else float32), fp32, bf16")
    p.add_argument("--memory", default="auto", choices=MEMORY_MODES,
                   help="full: one pass (memory grows with frames); bounded: streaming, same numbers")
    tune = p.add_argument_group("per-video fine-tuning (self-supervised, on the input itself)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output video, or write into a non-empty output folder (its frames "
                        "are replaced, extra ones removed)")
    tune.add_argument("--finetune", type=parse_finetune, default=None, metavar="N|TIME",
                      help=f"Adam steps before denoising, or a time budget such as 90s, 5min or 1h (as many "
                           f"steps as fit; default: {DEFAULT_MODEL_FINETUNE_STEPS} steps with the default model, "
                           "which keeps its colour, about two minutes on a CPU; 0 with any other model)")
    tune.add_argument("--quality", choices=tuple(QUALITY_PRESETS),
                      help="fine-tuning preset for the default model, more quality for more time: fast (none, "
                           f"seconds), default ({DEFAULT_MODEL_FINETUNE_STEPS} steps), best (the clip's own "
                           "scale: about 8 passes over its pixels, 400-2000 steps); --finetune overrides it")
    tune.add_argument("--finetune_lr", type=float, default=1e-4)
    tune.add_argument("--batch_size", type=int_in_range(1, 4096), default=VIDEO_BATCH_SIZE,
                      help="clips per fine-tuning step")
    tune.add_argument("--patch_size", type=int_in_range(1, 1 << 16), default=VIDEO_PATCH_SIZE,
                      help="fine-tuning crop size")
    tune.add_argument("--train_length", type=int_in_range(2, 1 << 16), default=VIDEO_TRAIN_LENGTH,
                      help="frames per clip")
    tune.add_argument("--seed", type=int_in_range(0, 2 ** 63 - 1), default=0, help="seed of the fine-tuning crops")
    tune.add_argument("--save_model", help="write the fine-tuned weights to this checkpoint")
    add_raw_arguments(p)
    return p


def _validate(args: argparse.Namespace) -> float | None:
    """Check the arguments before anything is read; returns --sigma (0-255), None for auto."""
    sigma = None if args.sigma == AUTO_SIGMA else parse_sigma(args.sigma, "--sigma")
    if args.model_file is None:
        if not DEFAULT_MODEL_FILE.is_file():
            raise UserError(f"the default model '{DEFAULT_MODEL_FILE}' is missing (it ships with the repository); "
                            "restore it with git or pass --model_file")
        args.model_file = str(DEFAULT_MODEL_FILE)
    if args.quality is not None and not _is_default_model(args.model_file):
        raise UserError("--quality sets the default model's fine-tuning; with --model_file use --finetune N")
    anchor = args.lowfreq_anchor
    if anchor is not None and not (math.isfinite(anchor) and 0 <= anchor <= MAX_ANCHOR_PX):
        raise UserError(f"--lowfreq_anchor must be a number of pixels from 0 to {MAX_ANCHOR_PX}, got {anchor:g}")
    args.finetune_budget_s = None
    if isinstance(args.finetune, Duration):
        args.finetune_budget_s, args.finetune = args.finetune.seconds, BUDGET_MAX_STEPS
    elif args.finetune is None:
        args.finetune = DEFAULT_MODEL_FINETUNE_STEPS if _is_default_model(args.model_file) else 0
    for name in ("batch_size", "patch_size", "train_length"):
        if getattr(args, name) < (2 if name == "train_length" else 1):
            raise UserError(f"--{name} is too small: {getattr(args, name)}")
    if args.save_model and not args.finetune:
        raise UserError("--save_model keeps fine-tuned weights; add --finetune N")
    if not str(args.output).strip():
        raise UserError("-o/--output is empty (an unset shell variable?); name an output video or folder")
    source = require_regular_input(args.input, "input")
    refuse_overlap(args.output, "-o/--output", [("the input", args.input), ("--model_file", args.model_file)])
    if source.is_file() and Path(args.output).resolve() == source.resolve().parent:
        raise UserError(f"-o/--output '{args.output}' is the folder of the input '{args.input}': the denoised "
                        "frames would replace the input's neighbours; choose another folder")
    if args.save_model:
        refuse_overlap(args.save_model, "--save_model", [("--model_file", args.model_file), ("the input", args.input)])
        refuse_training_checkpoint(args.save_model)
    check_writable_output(args.output)
    output = Path(args.output)
    if output.is_file() and not args.overwrite:
        raise UserError(f"-o/--output '{output}' already exists; pass --overwrite to replace it, or choose another "
                        "name")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise UserError(f"-o/--output '{output}' is a folder that is not empty; pass --overwrite to replace "
                        "its frames (frames beyond the new video's length are removed), or choose an empty folder")
    return sigma


@dataclass(frozen=True)
class Duration:
    """A --finetune time budget."""

    seconds: float


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|sec|m|min|h)$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_finetune(text: str) -> int | Duration:
    """--finetune: a number of steps (0 = none) or a time budget ('90s', '5min', '1.5h')."""
    if re.fullmatch(r"\s*[+-]?\d+\s*", text):
        return int_in_range(0, MAX_STEPS)(text)  # a step count: its own range message
    match = _DURATION.match(text.strip().lower())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if not 0 < seconds <= 7 * 24 * 3600:
            raise argparse.ArgumentTypeError(f"a time budget must be more than 0 and at most a week, got '{text}'")
        return Duration(seconds)
    try:
        return int_in_range(0, MAX_STEPS)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number of steps or a time such as 90s, 5min or 1h, got "
                                         f"'{text}'") from None


# --quality presets for the default model: fine-tuning steps, or a rule that scales with the clip.
QUALITY_PRESETS = {"fast": 0, "default": DEFAULT_MODEL_FINETUNE_STEPS, "best": None}
# 'best': enough steps for about this many passes over the clip's pixels with denoise.py's crops,
# within these bounds.
BEST_PASSES = 8
BEST_STEPS = (400, 2000)


def quality_steps(quality: str, shape: tuple[int, ...]) -> int:
    """Fine-tuning steps of a --quality preset for a video of `shape` (T,H,W,C)."""
    steps = QUALITY_PRESETS[quality]
    if steps is not None:
        return steps
    frames, height, width = shape[:3]
    per_step = VIDEO_BATCH_SIZE * VIDEO_TRAIN_LENGTH * VIDEO_PATCH_SIZE ** 2
    return int(min(BEST_STEPS[1], max(BEST_STEPS[0], BEST_PASSES * frames * height * width // per_step)))


def _is_default_model(model_file: str) -> bool:
    return Path(model_file).resolve() == DEFAULT_MODEL_FILE.resolve()


def estimated_sigma(stored: np.ndarray) -> float:
    """The input's noise level (0-255 scale) by `estimate_noise_sigma`, printed once."""
    try:
        sigma = estimate_noise_sigma(stored) * 255.0
    except ValueError as exc:
        raise UserError(f"--sigma auto: {exc}; pass the noise level with --sigma") from None
    print(f"estimated noise level: sigma {sigma:.1f} on the 0-255 scale (patch-PCA estimate; "
          "--sigma N overrides it)", flush=True)
    coarse = correlated_noise_sigma(stored, sigma / 255.0)
    if coarse is not None:
        warn(f"the noise looks spatially correlated (compressed video?): at half resolution it reads as sigma "
             f"{coarse * 255.0:.1f}, not {sigma:.1f}; STBN removes independent pixel noise, so expect little "
             "effect, or try --sigma N")
    low, high = USUAL_SIGMA_RANGE
    if not low <= sigma <= high:
        warn(f"an estimated sigma of {sigma:.1f} is outside {low:g}-{high:g}: the input looks "
             + ("nearly noise-free" if sigma < low else "unusually noisy") + "; check the output")
    return max(sigma, 1e-3)


def denoise_video(args: argparse.Namespace) -> dict[str, Any]:
    """Read, (fine-tune,) denoise and write; returns the output path, frame count, fps and losses.
    With --raw, raw Bayer video instead (engine/commands/denoise_raw.py)."""
    if args.raw:
        if args.prior_scale is not None:
            raise UserError("--prior_scale applies to sRGB video only (the raw models' posterior is not calibrated)")
        if args.lowfreq_anchor is not None:
            raise UserError("--lowfreq_anchor applies to sRGB video only")
        return denoise_raw(args)
    raw_only = [f"--{name}" for name in ("iso", "black", "white", "preview") if getattr(args, name) is not None]
    if raw_only or args.bayer_pattern != "GBRG":
        raise UserError(f"{(raw_only or ['--bayer_pattern'])[0]} applies to raw video only: add --raw")
    finetune_by_default = args.finetune is None
    given = _validate(args)
    prior_scale = parse_prior_scale(args.prior_scale or AUTO)
    device = resolve_device(args.device)
    model, _ = load_denoiser(args.model_file, device, args.model, args.num_resblocks, args.num_channels,
                             args.pwc_weights, args.flow, args.align)
    if model.config.img_channels != 3:
        raise UserError(f"--model_file '{args.model_file}' is a raw model ({model.config.img_channels} packed Bayer "
                        "channels): pass --raw and a folder of Bayer mosaics")
    stored, fps = read_video(args.input)
    sigma = unit_sigma(given if given is not None else estimated_sigma(stored))
    frames = VideoFrames(stored)
    losses: list[float] = []
    if args.quality is not None and finetune_by_default:
        args.finetune = quality_steps(args.quality, stored.shape)
        finetune_by_default = args.finetune > 0
    if finetune_by_default and args.finetune:
        if len(frames) < 2 and not args.save_model:
            print("a single frame: no fine-tuning (it needs a video)", flush=True)
            args.finetune = 0
        else:
            print(f"fine-tuning the default model on the input for {args.finetune} steps, as it does unless told "
                  "otherwise (it keeps the video's colour; --finetune 0 skips it)", flush=True)
    if args.finetune and args.finetune_budget_s is not None:
        print(f"fine-tuning on the input for up to {args.finetune_budget_s:g} s", flush=True)
    if args.finetune:
        losses = finetune_on_video(model, frames.rgb_uint8(), sigma, args.finetune, lr=args.finetune_lr,
                                   batch_size=args.batch_size, patch_size=args.patch_size,
                                   train_length=args.train_length, seed=args.seed,
                                   time_budget_s=args.finetune_budget_s)
        if args.finetune_budget_s is not None:
            print(f"fine-tuned {len(losses)} steps within the {args.finetune_budget_s:g} s budget", flush=True)
        if args.save_model:
            save_denoiser(args.save_model, model, {"model": args.model, "num_resblocks": args.num_resblocks,
                                                   "num_channels": args.num_channels,
                                                   "finetuned_on": str(args.input), "sigma": sigma * 255.0})
    if prior_scale is None:
        try:
            prior_scale = fit_prior_scale(model, torch.stack([frames[t] for t in range(min(len(frames), FIT_FRAMES))]),
                                          sigma)
        except PriorFitFailed as exc:
            warn(f"{exc}; using the model's own posterior (--prior_scale 1)")
            prior_scale = 1.0
        else:
            print(f"prior scale {format_prior_scale(prior_scale)}, fitted to the input "
                  "(--prior_scale 1 keeps the model's own)", flush=True)
    precision, note = choose_precision(args.precision, model,
                                       torch.stack([frames[t] for t in range(min(len(frames), CHECK_FRAMES))]),
                                       sigma)
    print(note, flush=True)
    anchor_px = args.lowfreq_anchor if args.lowfreq_anchor is not None else (
        DEFAULT_ANCHOR_PX if _is_default_model(args.model_file) else 0.0)
    if anchor_px:
        print(f"output's local means taken from the input (--lowfreq_anchor {anchor_px:g} px; 0 turns it off)",
              flush=True)
    denoised = np.empty_like(stored)
    for t, frame in checked_frames(model, frames, sigma, args.memory, prior_scale=prior_scale, precision=precision):
        frame = anchor_low_frequencies(frame, frames[t], anchor_px, sigma)
        denoised[t] = to_stored_format(frame, stored.dtype, stored.shape[-1])
    path = write_video(args.output, denoised, fps)
    print(f"denoised {len(frames)} frames ({stored.shape[2]}x{stored.shape[1]}, {fps:g} fps) -> {path}", flush=True)
    return {"output": path, "frames": len(frames), "fps": fps, "finetune_steps": args.finetune,
            "finetune_losses": losses, "finetune_steps_run": len(losses), "prior_scale": prior_scale,
            "precision": "bf16" if precision is not None else "fp32", "lowfreq_anchor": anchor_px}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `denoise.py` (wrap it in `utils.errors.run_cli`)."""
    denoise_video(build_arg_parser().parse_args(argv))
    return 0
