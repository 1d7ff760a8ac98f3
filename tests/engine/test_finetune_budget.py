"""denoise.py --finetune TIME and --quality: more quality for more time, stopping cleanly on time."""
import argparse

import numpy as np
import pytest
import torch

import engine.train.finetune as finetune_module
from engine.commands.denoise_video import Duration, parse_finetune, quality_steps
from engine.train.finetune import DEFAULT_MODEL_FINETUNE_STEPS, finetune_on_video
from models import build_model


def test_steps_or_a_time_budget_are_read():
    assert parse_finetune("0") == 0 and parse_finetune("160") == 160
    assert parse_finetune("5min") == Duration(300.0) and parse_finetune("90s") == Duration(90.0)
    assert parse_finetune("1.5h") == Duration(5400.0)
    for bad in ("abc", "0s", "5 parsecs", "-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_finetune(bad)


def test_a_time_budget_stops_within_one_step_of_it(monkeypatch):
    """A clock that advances 1 s per step: a 10.5 s budget runs exactly 10 steps (an 11th would end at 11 s)."""
    clock = [0.0]
    monkeypatch.setattr(finetune_module.time, "monotonic", lambda: clock[0])
    real_step = finetune_module.train_step

    def one_second_step(*args, **kwargs):
        clock[0] += 1.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "train_step", one_second_step)
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="zero")
    frames = np.random.default_rng(0).integers(0, 256, (4, 3, 24, 32), dtype=np.uint8)
    losses = finetune_on_video(model, frames, 0.1, 10 ** 5, batch_size=1, patch_size=16, train_length=2,
                               time_budget_s=10.5)
    assert len(losses) == 10 and clock[0] == 10.0
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_quality_presets_scale_with_the_clip():
    assert quality_steps("fast", (10, 120, 160, 3)) == 0
    assert quality_steps("default", (10, 120, 160, 3)) == DEFAULT_MODEL_FINETUNE_STEPS
    assert quality_steps("best", (10, 120, 160, 3)) == 400                   # small clip: the floor
    assert quality_steps("best", (50, 272, 640, 3)) == 2000                  # large clip: the ceiling
    assert 400 < quality_steps("best", (24, 240, 320, 3)) < 2000             # 8 passes over 1.8 Mpixel


@pytest.mark.slow
def test_denoise_py_takes_a_time_budget_and_writes_the_output(inputs, tmp_path, capsys):
    import engine.commands.denoise_video as denoise_cli
    from datasets.video_io import read_video
    from tests.test_robustness import TINY, cli
    out = tmp_path / "o.mp4"
    code, printed, err = cli(denoise_cli.main, [inputs["train"] / "seq0", "-o", out, "--model_file", inputs["ckpt"],
                                                *TINY, "--sigma", "30", "--finetune", "2s", "--batch_size", "1",
                                                "--patch_size", "16", "--train_length", "2"], capsys)
    assert code == 0, err
    assert "fine-tuning on the input for up to 2 s" in printed and "steps within the 2 s budget" in printed
    assert read_video(out)[0].shape[0] == 6
    code, _, err = cli(denoise_cli.main, [inputs["train"] / "seq0", "-o", tmp_path / "p.mp4", "--model_file",
                                          inputs["ckpt"], *TINY, "--sigma", "30", "--quality", "best"], capsys)
    assert code == 2 and "--quality sets the default model's fine-tuning" in err
