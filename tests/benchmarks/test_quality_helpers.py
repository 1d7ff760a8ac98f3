"""Pure helpers of the quality benchmark: NLM's border windows, crops, colour transform, report."""
import numpy as np
import pytest

from benchmarks.classical import OPPONENT, temporal_window, to_uint8
from benchmarks.common import timing_summary
from benchmarks.quality import centre_crop
from benchmarks.quality_report import format_table


@pytest.mark.parametrize("length", [1, 2, 3, 6, 24])
def test_temporal_window_is_centred_full_size_and_inside_the_clip(length):
    for t in range(length):
        window = temporal_window(t, length, 5)
        assert len(window) == 5 and window[2] == t
        assert all(0 <= i < length for i in window)


def test_temporal_window_mirrors_at_borders_and_is_plain_inside():
    assert temporal_window(0, 6, 5) == [2, 1, 0, 1, 2]
    assert temporal_window(5, 6, 5) == [3, 4, 5, 4, 3]
    assert temporal_window(3, 6, 5) == [1, 2, 3, 4, 5]


def test_to_uint8_clips_and_rounds():
    assert to_uint8(np.array([-0.2, 0.5, 1.3, 0.2 / 255])).tolist() == [0, 128, 255, 0]


def test_opponent_transform_is_orthonormal_so_noise_std_is_kept():
    np.testing.assert_allclose(OPPONENT @ OPPONENT.T, np.eye(3), atol=1e-12)


def test_centre_crop_keeps_small_frames_whole():
    frames = np.zeros((2, 10, 20, 3))
    assert centre_crop(frames, 4, 6).shape == (2, 4, 6, 3)
    assert centre_crop(frames, 40, 60).shape == (2, 10, 20, 3)


def test_timing_summary():
    assert timing_summary([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}


def test_format_table_puts_methods_down_and_sigmas_across():
    rows = [{"clip": "c", "region": "held-out", "sigma": s, "method": m, "psnr": p, "ssim": 0.5,
             "seconds": {"min": 1.0, "median": 1.0, "max": 1.0} if m != "b" else None,
             "frames": 3, "size": [8, 8]}
            for s, m, p in [(10, "a", 30.0), (30, "a", 25.0), (10, "b", 31.0)]]
    lines = format_table(rows).splitlines()
    assert "sigma 10" in lines[1] and "sigma 30" in lines[1]
    assert lines[2].startswith("a") and "30.00" in lines[2] and "25.00" in lines[2]
    assert lines[3].startswith("b") and "31.00" in lines[3] and lines[3].rstrip().endswith("-")
