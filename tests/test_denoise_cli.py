"""denoise.py end to end: a real (carphone) clip as mp4, and an odd-size gray 16-bit frame folder."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from datasets.builtin import builtin_clip
from datasets.video_io import read_video, write_video
from engine.commands.denoise_video import VideoFrames, main, to_stored_format
from engine.inference.loading import add_module_prefix, extract_state_dict, load_denoiser
from models import build_model
from tests.engine.synthetic import REPO_ROOT
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import run_cli

TINY = ["--num_channels", "8", "--num_resblocks", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2)
    ckpt = root / "tiny.pth"
    save_checkpoint(ckpt, {"args": {"flow_source": "dis"}, "state_dict": add_module_prefix(model.state_dict())})
    clip = np.ascontiguousarray(builtin_clip("carphone")[:5, 40:72, 60:108])  # 5 frames, 48x32
    video = root / "clip.mp4"
    write_video(video, clip, 12.0)
    gray = root / "gray16"
    gray.mkdir()
    for t, frame in enumerate(clip[:3, :31, :47]):  # odd size 47x31
        cv2.imwrite(str(gray / f"{t:03d}.png"), (frame.mean(axis=2) * 257).astype(np.uint16))
    return {"root": root, "ckpt": ckpt, "video": video, "gray": gray}


def _run(*argv):
    return subprocess.run([sys.executable, "denoise.py", *map(str, argv)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_video_file_keeps_frames_size_and_fps(files):
    out = files["root"] / "out.mp4"
    result = _run(files["video"], "-o", out, "--sigma", "30", "--model_file", files["ckpt"], *TINY)
    assert result.returncode == 0, result.stderr
    noisy, _ = read_video(files["video"])
    frames, fps = read_video(out)
    assert frames.shape == noisy.shape == (5, 32, 48, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(12.0)
    assert np.abs(frames.astype(int) - noisy.astype(int)).mean() > 1  # it did change the frames


@pytest.mark.slow
def test_gray_16bit_odd_folder_with_finetuning(files):
    out, saved = files["root"] / "gray_out", files["root"] / "tuned.pth"
    result = _run(files["gray"], "-o", out, "--sigma", "25", "--model_file", files["ckpt"], *TINY,
                  "--finetune", "2", "--batch_size", "1", "--patch_size", "24", "--train_length", "3",
                  "--save_model", saved)
    assert result.returncode == 0, result.stderr
    frames, _ = read_video(out)
    assert frames.shape == (3, 31, 47, 1) and frames.dtype == np.uint16
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert frames.max() > 255  # 16-bit range kept, not 8-bit values in a 16-bit file
    before = extract_state_dict(load_checkpoint(files["ckpt"]))
    after = load_checkpoint(saved)
    assert after["args"]["flow_source"] == "dis" and after["args"]["num_channels"] == 8
    tuned = extract_state_dict(after)
    # A DIS-aligned model is saved without PWC-Net's unused random weights, and still loads.
    pwc = {k for k in before if k.startswith("pwcnet.")}
    assert pwc and set(tuned) == set(before) - pwc
    assert not torch.equal(tuned["d2.convs.0.weight"], before["d2.convs.0.weight"])  # trained
    reloaded, _ = load_denoiser(saved, torch.device("cpu"))
    assert reloaded.config.flow == "dis"
    assert torch.equal(reloaded.state_dict()["d2.convs.0.weight"], tuned["d2.convs.0.weight"])


def test_frame_conversions_round_trip():
    gray16 = np.array([[[[0], [65535]], [[257], [1000]]]], dtype=np.uint16)  # (1,2,2,1)
    frames = VideoFrames(gray16)
    rgb = frames[0]
    assert rgb.shape == (3, 2, 2) and torch.equal(rgb[0], rgb[2])
    assert rgb[0, 1, 1].item() == pytest.approx(1000 / 65535)
    assert np.array_equal(to_stored_format(rgb, np.uint16, 1), gray16[0])
    assert frames.rgb_uint8()[0, :, 1, 0].tolist() == [1, 1, 1]  # 257 / 65535 * 255 = 1
    rgb8 = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    assert np.array_equal(to_stored_format(VideoFrames(rgb8)[0], np.uint8, 3), rgb8[0])


@pytest.mark.parametrize("problem", ["undecodable", "missing_checkpoint", "unwritable"])
def test_bad_input_is_one_line_exit_2(files, problem, capsys):
    root = files["root"]
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    blocker = root / "blocker"
    blocker.write_text("x")
    argv = {"undecodable": [str(broken), "-o", str(root / "x.mp4"), "--model_file", str(files["ckpt"])],
            "missing_checkpoint": [str(files["video"]), "-o", str(root / "y.mp4"), "--model_file",
                                   str(root / "nope.pth")],
            "unwritable": [str(files["video"]), "-o", str(blocker / "out.mp4"), "--model_file",
                           str(files["ckpt"])]}[problem]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv + ["--sigma", "30", *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    expected = {"undecodable": "broken.mp4", "missing_checkpoint": "nope.pth", "unwritable": "blocker"}[problem]
    assert expected in [line for line in err if line.startswith("error:")][0]


@pytest.mark.slow
def test_sigma_auto_is_the_default_and_prints_the_estimate(files, capsys):
    clean = builtin_clip("carphone")[-8:].astype(np.float32)
    rng = np.random.default_rng(5)
    noisy = np.clip(np.rint(clean + rng.standard_normal(clean.shape) * 20), 0, 255).astype(np.uint8)
    folder = files["root"] / "noisy20"
    folder.mkdir()
    for t, frame in enumerate(noisy):
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = files["root"] / "auto_out"
    assert main([str(folder), "-o", str(out), "--model_file", str(files["ckpt"]), *TINY]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("estimated noise level")]
    assert len(printed) == 1
    estimate = float(printed[0].split("sigma ")[1].split()[0])
    assert abs(estimate / 20 - 1) < 0.10
    assert len(list(out.iterdir())) == 8


def test_prior_scale_auto_by_default_and_one_is_the_official_posterior(files, capsys):
    from engine.inference.prior_scale import fit_prior_scale, parse_prior_scale
    from engine.inference.sequence import denoise_sequence
    noisy, _ = read_video(files["gray"])
    model, _ = load_denoiser(files["ckpt"], torch.device("cpu"), num_channels=8, num_resblocks=2)
    frames = VideoFrames(noisy)
    seqn = torch.stack([frames[t] for t in range(len(frames))])
    for option, scale in ((["--prior_scale", "1"], 1.0), ([], fit_prior_scale(model, seqn, 30 / 255))):
        out = files["root"] / f"prior{len(option)}"
        result = main([str(files["gray"]), "-o", str(out), "--sigma", "30", "--model_file", str(files["ckpt"]),
                       *TINY, *option])
        assert result == 0
        printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("prior scale")]
        assert len(printed) == (0 if option else 1)
        if printed:  # the printed matrix reads back as --prior_scale
            assert torch.allclose(parse_prior_scale(printed[0].split()[2].rstrip(",")), scale, atol=1e-4)
        expected = denoise_sequence(model, seqn, 30 / 255, prior_scale=scale)
        written, _ = read_video(out)
        assert np.array_equal(written, np.stack([to_stored_format(f, noisy.dtype, 1) for f in expected]))
    assert not torch.allclose(scale, torch.eye(3, dtype=torch.float64), atol=1e-3)  # the fit moved it


@pytest.mark.parametrize("argv,message", [(["--prior_scale", "0"], "--prior_scale: expected a positive"),
                                          (["--raw", "--iso", "1600", "--prior_scale", "1"], "sRGB video only")])
def test_bad_prior_scale_is_one_line(files, argv, message, capsys):
    with pytest.raises(SystemExit):
        run_cli(main, [str(files["video"]), "-o", str(files["root"] / "z.mp4"), "--model_file", str(files["ckpt"]),
                       *TINY, *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


def test_only_the_default_model_finetunes_by_default(files, capsys, monkeypatch):
    """No --finetune: the default model trains on the input with the video crops first (what keeps
    its colour, tests/test_default_model.py); a user's checkpoint and a single frame do not."""
    import engine.commands.denoise_video as cli
    calls = []
    monkeypatch.setattr(cli, "finetune_on_video", lambda model, frames, sigma, steps, **options:
                        calls.append((steps, frames.shape, options)) or [0.0])
    root = files["root"]
    assert main([str(files["video"]), "-o", str(root / "user.mp4"), "--model_file", str(files["ckpt"]), *TINY,
                 "--sigma", "30"]) == 0
    assert calls == [] and "fine-tuning" not in capsys.readouterr().out
    assert main([str(files["video"]), "-o", str(root / "default.mp4"), "--sigma", "30", "--device", "cpu"]) == 0
    assert calls == [(160, (5, 3, 32, 48), {"lr": 1e-4, "batch_size": 2, "patch_size": 64, "train_length": 4,
                                            "seed": 0, "time_budget_s": None})]
    assert "fine-tuning the default model on the input for 160 steps" in capsys.readouterr().out
    single = root / "single"
    single.mkdir()
    cv2.imwrite(str(single / "000.png"), read_video(files["video"])[0][0])
    assert main([str(single), "-o", str(root / "single_out"), "--sigma", "30", "--device", "cpu"]) == 0
    assert len(calls) == 1 and "a single frame: no fine-tuning" in capsys.readouterr().out
    assert len(list((root / "single_out").iterdir())) == 1
