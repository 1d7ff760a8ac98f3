import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from utils.metrics import frame_psnr, frame_ssim, sequence_psnr, sequence_ssim


def test_psnr_of_a_constant_offset_is_minus_10_log10_d_squared():
    clean = torch.full((3, 16, 16), 0.25)
    assert frame_psnr(clean + 0.125, clean) == pytest.approx(-10 * math.log10(0.125 ** 2), abs=1e-9)


def test_psnr_clips_the_clean_frame_but_not_the_denoised_one():
    clean = torch.full((3, 8, 8), 1.25)        # clipped to 1.0
    den = torch.full((3, 8, 8), 0.875)
    assert frame_psnr(den, clean) == pytest.approx(20 * math.log10(8), abs=1e-9)
    den_over = torch.full((3, 8, 8), 1.125)    # stays 0.125 away from the clipped 1.0
    assert frame_psnr(den_over, clean) == pytest.approx(20 * math.log10(8), abs=1e-9)


def test_sequence_psnr_is_the_mean_of_frame_psnrs():
    clean = torch.full((2, 3, 8, 8), 0.5)
    den = clean.clone()
    den[0] += 0.125
    den[1] += 0.25
    expected = (20 * math.log10(8) + 20 * math.log10(4)) / 2
    assert sequence_psnr(den, clean) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_identical_frames_is_one():
    frame = torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0))
    assert frame_ssim(frame, frame) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_frames_matches_the_closed_form_per_channel():
    # With zero variance SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 1)^2, averaged over channels.
    a = np.array([0.5, 0.2, 0.9])
    b = np.array([0.6, 0.2, 0.3])
    clean = torch.tensor(a, dtype=torch.float32).view(3, 1, 1).expand(3, 16, 16)
    den = torch.tensor(b, dtype=torch.float32).view(3, 1, 1).expand(3, 16, 16)
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    c1 = 1e-4
    expected = np.mean((2 * a32 * b32 + c1) / (a32 ** 2 + b32 ** 2 + c1))
    assert frame_ssim(den, clean) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx((0.6001 / 0.6101 + 1 + 0.5401 / 0.9001) / 3, abs=1e-6)


def test_ssim_drops_with_noise_and_sequence_averages_frames():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 24, 24, generator=g)
    den = clean.clone()
    den[1] += 0.1 * torch.randn(3, 24, 24, generator=g)
    s1 = frame_ssim(den[1], clean[1])
    assert 0.3 < s1 < 0.99
    assert sequence_ssim(den, clean) == pytest.approx((1.0 + s1) / 2, abs=1e-12)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        frame_psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))


def test_metrics_equal_the_official_arrays_bit_for_bit_whatever_the_input_layout():
    """Set8-sized frames: the official PSNR sums over (3,H,W) views of HxWx3 memory (the loader's
    clean frames and the posterior's output), which changes the last bit against a contiguous
    array on some frames; ours must give the official value for contiguous or channels-last input."""
    from tests import official_protocol as official

    rng = np.random.default_rng(1)
    clean_hwc = rng.random((3, 540, 960, 3), dtype=np.float32)
    den_hwc = clean_hwc + rng.normal(0, 0.05, clean_hwc.shape).astype(np.float32)
    clean = torch.from_numpy(clean_hwc).permute(0, 3, 1, 2)  # official layout
    den = torch.from_numpy(den_hwc).permute(0, 3, 1, 2)
    naive = [peak_signal_noise_ratio(np.ascontiguousarray(c).clip(0, 1), np.ascontiguousarray(d), data_range=1.)
             for c, d in zip(clean.numpy(), den.numpy())]
    for i in range(3):
        expected = official.batch_psnr(den[i:i + 1], clean[i:i + 1])
        assert frame_psnr(den[i].contiguous(), clean[i].contiguous()) == expected
        assert frame_psnr(den[i], clean[i]) == expected
    assert official.batch_ssim(den[:1], clean[:1]) == frame_ssim(den[0].contiguous(), clean[0].contiguous())
    # The layout really matters here: a contiguous computation misses the official value somewhere.
    assert any(n != official.batch_psnr(den[i:i + 1], clean[i:i + 1]) for i, n in enumerate(naive))
