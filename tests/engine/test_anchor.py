"""Low-frequency anchoring (engine/inference/anchor.py) and denoise.py's --lowfreq_anchor."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engine.inference.anchor import anchor_low_frequencies, expected_clipped


def smooth_scene(height: int = 96, width: int = 112, seed: int = 0) -> torch.Tensor:
    """(3,H,W) on [0.2, 0.8] with detail at every scale."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 2.0)
    image = (image - image.min()) / (image.max() - image.min())
    return torch.from_numpy(0.2 + 0.6 * image).permute(2, 0, 1).contiguous()


def high_pass(frame: torch.Tensor, blur_px: float = 5.0) -> np.ndarray:
    hwc = frame.permute(1, 2, 0).numpy()
    return hwc - cv2.GaussianBlur(hwc, (0, 0), blur_px)


def test_a_colour_cast_is_removed_and_the_detail_kept():
    clean = smooth_scene()
    noisy = clean + torch.from_numpy(np.random.default_rng(1).normal(0, 25 / 255, clean.shape).astype(np.float32))
    cast = torch.tensor([0.06, -0.04, 0.02])[:, None, None]  # a hue shift of the prior mean
    denoised = (clean + cast).clamp(0, 1)
    fixed = anchor_low_frequencies(denoised, noisy, 5.0)
    offset_before = (denoised - clean).mean(dim=(1, 2)).abs()
    offset_after = (fixed - clean).mean(dim=(1, 2)).abs()
    assert offset_before.min() > 0.019 and offset_after.max() < 0.004, (offset_before, offset_after)
    # the detail (high frequencies) is the denoised frame's, not the noisy one's
    np.testing.assert_allclose(high_pass(fixed), high_pass(denoised), atol=0.02)
    assert np.abs(high_pass(fixed) - high_pass(noisy)).mean() > 0.05
    # residual noise let in: about sigma / (3.5 * 5 px) of standard deviation
    let_in = (fixed - clean - (fixed - clean).mean(dim=(1, 2), keepdim=True)).std().item() * 255
    assert 0.7 < let_in < 2.5, let_in


def test_expected_clipped_is_the_mean_of_a_clipped_noisy_pixel():
    clean = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.97, 1.0])
    sigma = 50 / 255
    draws = np.clip(clean.numpy()[:, None] + np.random.default_rng(0).normal(0, sigma, (6, 400_000)), 0, 1)
    np.testing.assert_allclose(expected_clipped(clean, sigma).numpy(), draws.mean(axis=1), atol=1e-3)
    assert float(expected_clipped(clean, sigma)[0]) == pytest.approx(0.0782, abs=1e-3)  # black stores as ~20/255
    assert torch.equal(expected_clipped(clean, 0.0), clean)


def test_a_dark_clipped_scene_is_not_brightened():
    """Near black the stored noisy frame averages above the scene; the anchor must not copy that."""
    clean = smooth_scene(seed=6) * 0.15  # 0.03-0.12: within sigma of black
    sigma = 50 / 255
    noise = torch.from_numpy(np.random.default_rng(7).normal(0, sigma, clean.shape).astype(np.float32))
    stored = (clean + noise).clamp(0, 1)
    aware = anchor_low_frequencies(clean, stored, 5.0, sigma)
    naive = anchor_low_frequencies(clean, stored, 5.0, 0.0)
    assert abs(float((aware - clean).mean())) < 0.004
    assert float((naive - clean).mean()) > 0.04


def test_zero_turns_it_off_and_output_stays_in_range():
    clean = smooth_scene(seed=2)
    assert anchor_low_frequencies(clean, clean + 0.3, 0.0) is clean
    out = anchor_low_frequencies(clean, clean + 0.5, 3.0)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and float(out.max()) == 1.0


def test_grey_frames_keep_one_channel():
    clean = smooth_scene(seed=3)[:1]
    out = anchor_low_frequencies(clean, clean + 0.1, 4.0)
    assert out.shape == clean.shape
    torch.testing.assert_close(out, (clean + 0.1).clamp(0, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("value", ["-1", "nan", "2000"])
def test_denoise_py_refuses_a_bad_blur_in_one_line(tmp_path, value):
    from engine.commands.denoise_video import build_arg_parser, denoise_video
    from utils.errors import UserError

    frames = tmp_path / "in"
    frames.mkdir()
    cv2.imwrite(str(frames / "0000.png"), np.zeros((16, 16, 3), np.uint8))
    args = build_arg_parser().parse_args([str(frames), "-o", str(tmp_path / "out"), "--lowfreq_anchor", value])
    with pytest.raises(UserError, match="--lowfreq_anchor must be a number of pixels from 0 to 1000"):
        denoise_video(args)
    assert not (tmp_path / "out").exists()


def test_denoise_py_anchors_the_default_model_and_can_be_told_not_to(tmp_path, capsys):
    from engine.commands.denoise_video import build_arg_parser, denoise_video

    frames = tmp_path / "in"
    frames.mkdir()
    clean = (smooth_scene(48, 64, seed=4).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    rng = np.random.default_rng(5)
    for t in range(3):
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames / f"{t:04d}.png"), noisy[..., ::-1])
    outputs = {}
    for px in (None, "0"):
        extra = [] if px is None else ["--lowfreq_anchor", px]
        result = denoise_video(build_arg_parser().parse_args(
            [str(frames), "-o", str(tmp_path / f"out{px}"), "--finetune", "0", "--sigma", "20", *extra]))
        outputs[px] = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / f"out{px}").glob("*.png"))])
        assert result["lowfreq_anchor"] == (5.0 if px is None else 0.0)
    assert "--lowfreq_anchor 5 px; 0 turns it off" in capsys.readouterr().out
    assert np.abs(outputs[None].astype(int) - outputs["0"]).mean() > 0.3


def test_raw_video_refuses_the_anchor(tmp_path):
    from engine.commands.denoise_video import build_arg_parser, denoise_video
    from utils.errors import UserError

    args = build_arg_parser().parse_args([str(tmp_path), "-o", str(tmp_path / "o"), "--raw", "--lowfreq_anchor", "3"])
    with pytest.raises(UserError, match="--lowfreq_anchor applies to sRGB video only"):
        denoise_video(args)
