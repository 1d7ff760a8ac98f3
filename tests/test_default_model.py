"""The default model that ships in weights/: small, loadable, colour-keeping, used with no arguments."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from datasets.builtin import builtin_split
from datasets.video_io import read_video, write_video
from engine.inference.loading import DEFAULT_MODEL_FILE, load_denoiser
from engine.inference.sequence import denoise_sequence
from tests.engine.synthetic import REPO_ROOT
from utils.checkpoint import load_checkpoint
from utils.colour import colourfulness

# How far the output's colourfulness may be from the clean clip's (the main.sh demo model, which
# greys video out, reaches -81% here).
CHROMA_TOLERANCE = 0.2


def mean_chroma(frames: np.ndarray) -> float:
    """Mean colourfulness of (T,H,W,3) uint8 frames (`utils.colour.colourfulness`)."""
    return colourfulness(frames.astype(np.float32) / 255)


def test_the_file_is_small_and_holds_no_unused_pwc_weights():
    assert DEFAULT_MODEL_FILE.stat().st_size < 5_000_000
    checkpoint = load_checkpoint(DEFAULT_MODEL_FILE)
    assert not any("pwcnet." in k for k in checkpoint["state_dict"]) and "optimizer" not in checkpoint
    model, _ = load_denoiser(DEFAULT_MODEL_FILE, torch.device("cpu"))
    assert model.config.flow == "dis" and model.config.noise_map
    assert checkpoint["args"]["noise_ival"] == [5.0, 55.0]  # blind over the paper's range


def noisy_carphone(sigma: float = 25.0, frames: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out carphone frames (never trained on; the most colourful built-in clip) and an 8-bit noisy copy."""
    clean = builtin_split("carphone")[1][:frames]
    rng = np.random.default_rng(seed)
    return clean, np.clip(np.rint(clean + rng.standard_normal(clean.shape) * sigma), 0, 255).astype(np.uint8)


@pytest.mark.xfail(strict=True, reason="not met: the model alone (no fine-tuning, no anchor) keeps 2.81 of the "
                   "clean clip's 8.96 colourfulness (model card 'Colour'); denoise.py's low-frequency anchor and "
                   "fine-tuning keep it; this passes once a shipped model keeps colour by itself")
def test_the_model_alone_keeps_colour_on_a_colourful_held_out_clip():
    clean, noisy = noisy_carphone()
    model, _ = load_denoiser(DEFAULT_MODEL_FILE, torch.device("cpu"))
    den = denoise_sequence(model, torch.from_numpy(noisy).permute(0, 3, 1, 2).float() / 255, 25 / 255)
    out = (den.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    assert abs(mean_chroma(out) / mean_chroma(clean) - 1) < CHROMA_TOLERANCE, (mean_chroma(out), mean_chroma(clean))


@pytest.mark.slow
def test_denoise_py_keeps_colour_on_a_colourful_held_out_clip(tmp_path):
    """`denoise.py in -o out` as it runs with no other argument (sigma estimated, 160 fine-tuning steps
    on the input, fitted prior, low-frequency anchor): the output's colourfulness within the tolerance
    of the clean clip's, also without the fine-tuning (the anchor keeps the input's local colour), and
    the fine-tuning worth more than half a dB."""
    from engine.commands.denoise_video import build_arg_parser, denoise_video
    from utils.metrics import sequence_psnr
    clean, noisy = noisy_carphone()
    write_video(tmp_path / "noisy", noisy, 25.0)
    outputs = {}
    for name, extra in (("default", []), ("no finetune", ["--finetune", "0"])):
        out = tmp_path / name.replace(" ", "_")
        result = denoise_video(build_arg_parser().parse_args([str(tmp_path / "noisy"), "-o", str(out), *extra]))
        assert result["finetune_steps"] == (160 if name == "default" else 0)
        outputs[name] = read_video(out)[0]
    chroma = {name: mean_chroma(out) for name, out in outputs.items()}
    for name in outputs:
        assert abs(chroma[name] / mean_chroma(clean) - 1) < CHROMA_TOLERANCE, (name, chroma, mean_chroma(clean))

    def tchw(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255

    psnr = {name: sequence_psnr(tchw(out), tchw(clean)) for name, out in outputs.items()}
    assert psnr["default"] > psnr["no finetune"] + 0.5, psnr


@pytest.mark.slow
def test_denoise_with_no_other_argument(tmp_path):
    _, noisy = noisy_carphone(sigma=20, frames=6, seed=1)
    write_video(tmp_path / "clip.mp4", noisy, 25.0)
    result = subprocess.run([sys.executable, "denoise.py", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out.mp4")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    assert "estimated noise level: sigma" in result.stdout
    assert "fine-tuning the default model on the input for 160 steps" in result.stdout
    assert "spatially correlated (compressed video?)" in result.stderr  # mp4 noise is no longer white
    frames, fps = read_video(tmp_path / "out.mp4")
    assert frames.shape == noisy.shape and fps == pytest.approx(25.0)
