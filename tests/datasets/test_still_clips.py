"""Clips made from scikit-image's photographs: deterministic, smooth, borderless, colourful."""
import cv2
import numpy as np

from datasets.builtin import builtin_names, builtin_split
from datasets.still_clips import CLIP_FRAMES, STILL_IMAGES, camera_path, still_clip
from utils.colour import colourfulness


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """Size of the translation between two frames (phase correlation on grey)."""
    (dx, dy), _ = cv2.phaseCorrelate(*(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (a, b)))
    return float(np.hypot(dx, dy))


def test_a_clip_is_the_same_every_time_and_moves_smoothly():
    clip = still_clip("chelsea")
    assert clip.shape[0] == CLIP_FRAMES and clip.dtype == np.uint8
    assert np.array_equal(clip, still_clip("chelsea"))
    shifts = [_shift(clip[t], clip[t + 1]) for t in range(CLIP_FRAMES - 1)]
    assert 0.05 < np.mean(shifts) and max(shifts) < 3.0  # a camera that moves, slowly
    path = camera_path("chelsea")
    assert np.abs(np.diff(path[:, :2], axis=0)).max() < 3.0 and np.all(np.abs(path[:, 2] - 1) < 0.05)
    assert not np.array_equal(camera_path("coffee"), path)  # each photograph its own path


def test_no_invented_border_and_colour_is_kept(monkeypatch):
    """Pixels from outside the photograph are painted magenta: the crop must hold none."""
    real_warp = cv2.warpAffine

    def marking(image, matrix, size, flags, borderMode):  # noqa: N803 (OpenCV's names)
        return real_warp(image, matrix, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 0, 255))

    monkeypatch.setattr(cv2, "warpAffine", marking)
    for name in STILL_IMAGES:
        clip = still_clip(name)
        assert not np.all(clip == (255, 0, 255), axis=-1).any(), name
    assert colourfulness(still_clip("coffee")[:2].astype(np.float32) / 255) > 8


def test_the_stills_group_and_names_are_built_in_clips():
    assert builtin_names("bikes,stills") == ["bikes", *STILL_IMAGES]
    assert builtin_names("all") == ["bikes", "carphone", "bunny"]
    train, held_out = builtin_split("rocket")
    assert len(train) + len(held_out) == CLIP_FRAMES and train.shape[1:] == held_out.shape[1:]
