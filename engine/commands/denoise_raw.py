"""Denoise raw Bayer video with the raw STBN (`denoise.py --raw`): a folder of mosaic frames in,
denoised mosaic frames and a preview video out.

Frames are single-channel 16-bit (or 8-bit) TIFF/PNG mosaics. They are normalised by the black and
white levels (`--iso` gives CRVD's 240 / 4095 and the ISO's noise parameters; `--black/--white`
other levels), brought to the GBRG phase the model was trained on (`--bayer_pattern`: other
phases are shifted by one mirrored row and/or column, removed again afterwards), packed to 4
channels and denoised. The output frames keep the input's levels, size and bit depth; the preview
shows noisy | denoised through the classical ISP (utils/raw_isp.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.crvd import ISOS, noise_parameters
from datasets.image_folder import list_frames, read_frame_native, read_frames
from datasets.video_io import DEFAULT_FPS, VIDEO_EXTENSIONS, check_writable_output, write_video
from engine.inference.loading import load_denoiser, resolve_device
from engine.inference.precision import CHECK_FRAMES, choose_precision
from engine.inference.sequence import checked_frames
from utils.errors import UserError
from utils.noise import PoissonGaussian
from utils.paths import refuse_overlap, require_regular_input
from utils.raw import BLACK_LEVEL, WHITE_LEVEL, pack_gbrg, unpack_gbrg
from utils.raw_isp import classical_isp, gray_world_gains

# Rows and columns to shift a mosaic by so that it starts with G B / R G (GBRG).
BAYER_SHIFTS = {"GBRG": (0, 0), "RGGB": (1, 0), "BGGR": (0, 1), "GRBG": (1, 1)}


def add_raw_arguments(p: argparse.ArgumentParser) -> None:
    """The `--raw` options of denoise.py."""
    raw = p.add_argument_group("raw Bayer video (--raw; a folder of single-channel mosaic frames in, a folder out)")
    raw.add_argument("--raw", action="store_true", help="the input is raw Bayer video; use a raw model (CRVD_train.py)")
    raw.add_argument("--iso", type=int, choices=ISOS,
                     help="CRVD ISO of the capture: levels 240/4095 and its noise parameters (a Gaussian raw head "
                          "needs them)")
    raw.add_argument("--black", type=float, help="black level (default 240, CRVD's)")
    raw.add_argument("--white", type=float, help="white level (default 4095, CRVD's 12-bit)")
    raw.add_argument("--bayer_pattern", default="GBRG", choices=tuple(BAYER_SHIFTS),
                     help="colour order of the mosaic's top-left 2x2 block, read row by row (CRVD: GBRG)")
    raw.add_argument("--preview", help="preview video, noisy | denoised through a classical ISP "
                                       "(default: <output>_preview.mp4)")


def _levels(args: argparse.Namespace) -> tuple[float, float]:
    black = BLACK_LEVEL if args.black is None else args.black
    white = WHITE_LEVEL if args.white is None else args.white
    if not (np.isfinite(black) and np.isfinite(white) and 0 <= black < white):
        raise UserError(f"--black {black:g} / --white {white:g}: need 0 <= black < white")
    return float(black), float(white)


def _check_levels(stored: np.ndarray, black: float, white: float, source: str) -> None:
    """Refuse levels that cannot describe these frames: a white level above what their bit depth
    holds (8-bit frames with the default 12-bit levels), or pixels above the white level (16-bit
    full-range frames with 12-bit levels); either would destroy the output silently."""
    bits = np.iinfo(stored.dtype).bits
    top = float(np.iinfo(stored.dtype).max)
    if white > top:
        raise UserError(f"--white {white:g} is above what these {bits}-bit frames hold ({top:g}): give the "
                        "sensor's levels with --black/--white (CRVD's 240/4095 need 16-bit frames)")
    brightest = float(stored.max())
    if brightest > white:
        raise UserError(f"'{source}': pixels reach {brightest:g}, above the white level {white:g}: give the "
                        "sensor's levels with --black/--white")


def read_mosaics(folder: str) -> np.ndarray:
    """(T,H,W) uint8/uint16 mosaics of a frame folder (or one image); `UserError` for colour frames."""
    source = Path(folder)
    paths = list_frames(source) if source.is_dir() else [source]
    frames = read_frames(paths, str(source), reader=read_frame_native)
    if frames.shape[-1] != 1:
        raise UserError(f"'{folder}': raw frames must be single-channel Bayer mosaics, these have "
                        f"{frames.shape[-1]} channels (for ordinary video leave out --raw)")
    return frames[..., 0]


def to_gbrg(mosaics: np.ndarray, pattern: str) -> np.ndarray:
    """Shift `pattern` mosaics (T,H,W) to the GBRG phase by one mirrored row/column per side as needed."""
    dy, dx = BAYER_SHIFTS[pattern]
    return np.pad(mosaics, ((0, 0), (dy, dy), (dx, dx)), mode="reflect") if dy or dx else mosaics


def from_gbrg(mosaics: np.ndarray, pattern: str) -> np.ndarray:
    """Inverse of `to_gbrg`."""
    dy, dx = BAYER_SHIFTS[pattern]
    return mosaics[:, dy:mosaics.shape[1] - dy, dx:mosaics.shape[2] - dx]


def denoise_raw(args: argparse.Namespace) -> dict[str, Any]:
    """Read, denoise and write raw video (see module docstring); returns the output paths and frame count."""
    if args.model_file is None:
        raise UserError("--raw needs a raw model: pass --model_file (trained by CRVD_train.py or mainraw.sh)")
    if args.finetune:
        raise UserError("--finetune is not available with --raw yet; train on your captures with CRVD_train.py")
    black, white = _levels(args)
    require_regular_input(args.input, "input")
    refuse_overlap(args.output, "-o/--output", [("the input", args.input), ("--model_file", args.model_file)])
    output = check_writable_output(args.output)
    if output.suffix:
        raise UserError(f"-o/--output '{args.output}': with --raw the output is a folder of frames (no extension)")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise UserError(f"-o/--output '{output}' is a folder that is not empty; pass --overwrite or choose another")
    preview = Path(args.preview) if args.preview else output.with_name(output.name + "_preview.mp4")
    refuse_overlap(preview, "--preview", [("the input", args.input), ("-o/--output", args.output)])
    if check_writable_output(preview).suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(f"--preview '{preview}': the preview is a video file ({'/'.join(VIDEO_EXTENSIONS)})")
    if preview.exists() and not args.overwrite:
        raise UserError(f"--preview '{preview}' already exists; pass --overwrite to replace it")
    model, _ = load_denoiser(args.model_file, resolve_device(args.device), "BR_d_c_raw", args.num_resblocks,
                             args.num_channels, args.pwc_weights, args.flow, args.align)
    if model.config.img_channels != 4:
        raise UserError(f"--model_file '{args.model_file}' is an sRGB model; --raw needs a raw model "
                        "(4 packed channels)")
    gaussian_head = model.config.head_outputs != 4
    if gaussian_head and args.iso is None:
        raise UserError("this raw model (--raw_loss gaussian) needs the noise parameters: pass --iso")
    stored = read_mosaics(args.input)
    _check_levels(stored, black, white, args.input)
    shifted = to_gbrg(stored, args.bayer_pattern)
    if shifted.shape[1] % 2 or shifted.shape[2] % 2:
        raise UserError(f"'{args.input}': frames are {stored.shape[2]}x{stored.shape[1]}; a Bayer mosaic has "
                        "even sides")
    levels = torch.from_numpy(shifted.astype(np.float32))
    packed = pack_gbrg((levels - black).clamp_(min=0) / (white - black))
    noise = PoissonGaussian(*noise_parameters(args.iso)) if args.iso is not None else 0.0
    precision, note = choose_precision(args.precision, model, packed[:CHECK_FRAMES], noise)
    print(note, flush=True)
    denoised = torch.empty_like(packed)
    for t, frame in checked_frames(model, packed, noise, args.memory, desc="denoising raw", precision=precision):
        denoised[t] = frame
    top = float(np.iinfo(stored.dtype).max)
    mosaics = unpack_gbrg(denoised).numpy().astype(np.float64) * (white - black) + black
    frames_out = np.clip(np.rint(from_gbrg(mosaics, args.bayer_pattern)), 0, top).astype(stored.dtype)
    write_video(output, frames_out[..., None])
    gains = gray_world_gains(denoised[len(denoised) // 2])
    pictures = [np.concatenate([classical_isp(n, gains), classical_isp(d, gains)], axis=1)
                for n, d in zip(packed, denoised)]
    write_video(preview, (np.stack(pictures) * 255 + 0.5).astype(np.uint8), DEFAULT_FPS)
    print(f"denoised {len(packed)} raw frames ({stored.shape[2]}x{stored.shape[1]}) -> {output}; "
          f"preview (noisy | denoised, classical ISP) -> {preview}", flush=True)
    return {"output": output, "preview": preview, "frames": len(packed)}
