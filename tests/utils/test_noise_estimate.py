"""The blind noise-level estimate (`denoise.py --sigma auto`) on real frames with synthetic noise."""
import numpy as np
import pytest

from datasets.builtin import builtin_split
from utils.noise_estimate import estimate_noise_sigma


@pytest.fixture(scope="module")
def clean_clips():
    return {clip: builtin_split(clip)[1][:8].astype(np.float32) / 255 for clip in ("carphone", "bikes")}


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_compressed_noise_is_flagged_as_correlated_and_white_noise_is_not(clean_clips, tmp_path):
    """A sigma-25 clip written as mp4 (OpenCV) keeps its noise as blotches: the fine-scale estimate
    falls far below 25 and `correlated_noise_sigma` flags it; white noise, clipped or not, is not flagged."""
    from datasets.video_io import read_video, write_video
    from utils.noise_estimate import correlated_noise_sigma
    clean = clean_clips["bikes"]
    rng = np.random.default_rng(2)
    for sigma in (5, 25):
        noisy = np.clip(np.rint((clean + rng.standard_normal(clean.shape) * (sigma / 255)) * 255), 0, 255)
        noisy = noisy.astype(np.uint8)
        assert correlated_noise_sigma(noisy, estimate_noise_sigma(noisy)) is None
    write_video(tmp_path / "noisy.mp4", noisy, 25.0)
    compressed, _ = read_video(tmp_path / "noisy.mp4")
    fine = estimate_noise_sigma(compressed)
    assert fine * 255 < 10                       # the estimator alone would report mild noise
    coarse = correlated_noise_sigma(compressed, fine)
    assert coarse is not None and coarse > 2 * fine
    assert np.sqrt(np.mean((compressed / 255.0 - clean) ** 2)) * 255 > 10   # yet it is far from clean
