"""main.sh's last step: noisy vs denoised scores and the side-by-side picture on a built-in clip."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from datasets.builtin import builtin_split
from engine.commands.report_builtin import report_builtin
from engine.inference.loading import save_denoiser
from models import build_model
from tests.engine.synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_report_reads_the_model_shape_off_the_checkpoint(tmp_path, capsys):
    model = build_model("stbn", num_resblocks=2, num_channels=8, flow="zero")
    save_denoiser(tmp_path / "ckpt.pth", model, {"epoch": 1})
    result = report_builtin(str(tmp_path / "ckpt.pth"), "carphone", 30.0, "cpu", max_frames=3,
                            output_png=str(tmp_path / "sbs.png"), results_json=str(tmp_path / "r.json"))
    assert result["frames"] == 3 and result["flow"] == "zero"
    # sigma 30 on [0, 255] images clipped to [0, 1]: about 18.6-19 dB.
    assert 18.0 < result["noisy"]["psnr"] < 20.0 and 0 < result["noisy"]["ssim"] < 1
    assert np.isfinite(result["denoised"]["psnr"])
    assert json.loads((tmp_path / "r.json").read_text())["denoised"] == pytest.approx(result["denoised"])
    picture = iio.imread(tmp_path / "sbs.png")
    _, held_out = builtin_split("carphone")
    height, width = held_out.shape[1:3]
    assert picture.shape == (height, 3 * width, 3)
    assert np.array_equal(picture[:, 2 * width:], held_out[1])  # clean panel = middle frame, exactly
    assert "gain" in capsys.readouterr().out
