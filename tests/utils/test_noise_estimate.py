"""The blind noise-level estimate (`denoise.py --sigma auto`) on real frames with synthetic noise."""
import numpy as np
import pytest

from datasets.builtin import builtin_split
from utils.noise_estimate import estimate_noise_sigma


@pytest.fixture(scope="module")
def clean_clips():
    return {clip: builtin_split(clip)[1][:8].astype(np.float32) / 255 for clip in ("carphone", "bikes")}


@pytest.mark.parametrize("clip", ["carphone", "bikes"])
@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_within_ten_percent_on_float_and_clipped_8bit_video(clean_clips, clip, sigma):
    clean = clean_clips[clip]
    rng = np.random.default_rng(sigma)
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32) * (sigma / 255)
    clipped = np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)   # what a video file holds
    for frames in (noisy, clipped):
        estimate = estimate_noise_sigma(frames) * 255
        assert abs(estimate / sigma - 1) < 0.10, (clip, sigma, frames.dtype, estimate)


def test_clean_video_reads_as_nearly_noiseless_and_uint16_is_scaled(clean_clips):
    clean = clean_clips["bikes"]
    assert estimate_noise_sigma(np.rint(clean * 255).astype(np.uint8)) * 255 < 2.0
    rng = np.random.default_rng(0)
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32) * (20 / 255)
    as16 = np.clip(np.rint(noisy * 65535), 0, 65535).astype(np.uint16)
    assert estimate_noise_sigma(as16) * 255 == pytest.approx(estimate_noise_sigma(noisy) * 255, rel=0.02)


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="too few pixels"):
        estimate_noise_sigma(np.zeros((2, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 6x6"):
        estimate_noise_sigma(np.zeros((2, 4, 40, 3), np.uint8))


def test_gray_stored_as_rgb_reads_like_one_channel(clean_clips):
    rng = np.random.default_rng(3)
    gray = clean_clips["bikes"].mean(axis=-1, keepdims=True)
    noisy = np.clip(np.rint((gray + rng.standard_normal(gray.shape) * (25 / 255)) * 255), 0, 255).astype(np.uint8)
    as_rgb = np.repeat(noisy, 3, axis=-1)
    assert estimate_noise_sigma(as_rgb) == estimate_noise_sigma(noisy)
    assert abs(estimate_noise_sigma(noisy) * 255 / 25 - 1) < 0.10
