"""denoise.py --raw end to end on simulated raw frames: levels, Bayer phase, output format, preview."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from datasets.crvd import CLEAN_NAME, NOISY_NAME, CRVDTestDataset, layout_dir, noise_parameters
from datasets.simulated_raw import write_simulated_crvd
from datasets.video_io import read_video
from engine.commands.denoise_raw import from_gbrg, to_gbrg
from engine.commands.denoise_video import build_arg_parser, denoise_video
from engine.inference.loading import load_denoiser, save_denoiser
from engine.inference.sequence import denoise_sequence
from models import build_model
from utils.errors import UserError
from utils.noise import PoissonGaussian
from utils.raw import unpack_gbrg


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw_denoise")
    tree = write_simulated_crvd(root / "CRVD", height=32, width=40, scenes=(7,), isos=(6400,), captures=1)
    frames = layout_dir(tree, "noisy", 7, 6400, "stbn")
    torch.manual_seed(0)
    for name, head in (("mse.pth", 4), ("gauss.pth", 14)):
        model = build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero", head_outputs=head)
        save_denoiser(root / name, model, {"model": "BR_d_c_raw"})
    return {"root": root, "tree": tree, "frames": frames}


def _run(setup, out, *extra):
    args = build_arg_parser().parse_args([str(setup["frames"]), "-o", str(out), "--raw", "--device", "cpu", *extra])
    return denoise_video(args)


def test_bayer_phase_shift_round_trips_and_lands_on_gbrg():
    mosaic = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    for pattern in ("GBRG", "RGGB", "BGGR", "GRBG"):
        assert np.array_equal(from_gbrg(to_gbrg(mosaic, pattern), pattern), mosaic)
    rggb = np.tile(np.array([[0, 1], [1, 2]]), (2, 3))[None]   # R=0 G=1 B=2, first row R G
    assert to_gbrg(rggb, "RGGB")[0, :2, :2].tolist() == [[1, 2], [0, 1]]   # G B / R G


def test_raw_frames_are_denoised_as_the_model_does_and_keep_their_format(setup):
    out = setup["root"] / "out"
    result = _run(setup, out, "--model_file", str(setup["root"] / "gauss.pth"), "--iso", "6400")
    written, _ = read_video(out)
    noisy = np.stack([cv2.imread(str(setup["frames"] / NOISY_NAME.format(t=t, k=0)), cv2.IMREAD_UNCHANGED)
                      for t in range(1, 8)])
    assert written.shape == (7, 32, 40, 1) and written.dtype == np.uint16
    # By hand: the test set's packed frames, the model with the ISO's noise, back to 12-bit levels.
    item = CRVDTestDataset(setup["tree"], scenes=(7,), isos=(6400,))[0]
    model, _ = load_denoiser(setup["root"] / "gauss.pth", torch.device("cpu"))
    den = denoise_sequence(model, item["noisy"], PoissonGaussian(*noise_parameters(6400)))
    expected = np.clip(np.rint(unpack_gbrg(den).double().numpy() * 3855 + 240), 0, 65535)
    assert np.abs(written[..., 0].astype(float) - expected).max() <= 1
    assert not np.array_equal(written[..., 0], noisy)
    preview, _ = read_video(result["preview"])
    assert preview.shape == (7, 32, 80, 3)   # noisy | denoised, full resolution


def test_raw_mistakes_are_one_line_errors(setup):
    root = setup["root"]
    with pytest.raises(UserError, match="needs the noise parameters: pass --iso"):
        _run(setup, root / "o1", "--model_file", str(root / "gauss.pth"))
    with pytest.raises(UserError, match="needs a raw model: pass --model_file"):
        _run(setup, root / "o2")
    clean_dir = layout_dir(setup["tree"], "gt", 7, 6400, "stbn")
    assert (clean_dir / CLEAN_NAME.format(t=1)).is_file()
    with pytest.raises(UserError, match="applies to raw video only"):
        denoise_video(build_arg_parser().parse_args([str(clean_dir), "-o", str(root / "o3"), "--iso", "1600"]))
    rgb = root / "rgb"
    rgb.mkdir()
    cv2.imwrite(str(rgb / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="single-channel Bayer"):
        denoise_video(build_arg_parser().parse_args([str(rgb), "-o", str(root / "o4"), "--raw",
                                                     "--model_file", str(root / "mse.pth")]))
    assert not any((root / name).exists() for name in ("o1", "o2", "o3", "o4"))
