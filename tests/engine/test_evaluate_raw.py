"""CRVD_test.py on a tiny simulated CRVD tree: per-ISO numbers recomputed by hand, sRGB with an ISP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from datasets.crvd import CRVDTestDataset
from datasets.simulated_raw import write_simulated_crvd
from engine.commands.evaluate_raw import main
from engine.inference.loading import save_denoiser
from models import build_model
from models.isp import RViDeNetISP
from utils.checkpoint import save_checkpoint
from utils.errors import UserError, run_cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crvd_test")
    tree = write_simulated_crvd(root / "CRVD", height=32, width=48, captures=1, layout="florn")
    torch.manual_seed(0)
    model = build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero").eval()
    save_denoiser(root / "raw.pth", model, {"model": "BR_d_c_raw"})
    torch.manual_seed(1)
    save_checkpoint(root / "isp.pth", {"state_dict": RViDeNetISP().state_dict()})
    return {"root": root, "tree": tree, "model": model}


def test_per_iso_raw_metrics_equal_a_by_hand_computation(setup, capsys):
    out = setup["root"] / "raw.json"
    with pytest.raises(SystemExit) as done:
        run_cli(main, ["--model_file", str(setup["root"] / "raw.pth"), "--CRVD_dir", str(setup["tree"]),
                       "--device", "cpu", "--results_json", str(out)])
    assert done.value.code == 0
    results = json.loads(out.read_text())
    assert list(results) == ["1600", "3200", "6400", "12800", "25600", "average"]
    item = CRVDTestDataset(setup["tree"], scenes=(9,), isos=(6400,))[0]
    with torch.no_grad():
        den = setup["model"](item["noisy"][None])[0][0].clamp(0, 1)
    psnrs = [peak_signal_noise_ratio(c.double().numpy(), d.double().numpy(), data_range=1.0)
             for d, c in zip(den, item["clean"])]
    ssims = [np.mean([structural_similarity(c[k].double().numpy(), d[k].double().numpy(), data_range=1.0)
                      for k in range(4)]) for d, c in zip(den, item["clean"])]
    scene = results["6400"]["scenes"]["9"]
    assert scene["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert scene["ssim"] == pytest.approx(np.mean(ssims), abs=1e-5)
    assert results["6400"]["psnr"] == pytest.approx(np.mean([s["psnr"] for s in results["6400"]["scenes"].values()]))
    assert results["average"]["psnr"] == pytest.approx(np.mean([results[i]["psnr"] for i in list(results)[:5]]))
    printed = capsys.readouterr().out
    assert f"-> {results['6400']['psnr']:.4f} dB" in printed and "average: raw PSNR" in printed
    assert results["25600"]["noisy_psnr"] < results["1600"]["noisy_psnr"]  # more noise at a higher ISO


def test_isp_adds_srgb_metrics_and_a_non_raw_model_is_refused(setup, capsys):
    out = setup["root"] / "srgb.json"
    with pytest.raises(SystemExit) as done:
        run_cli(main, ["--model_file", str(setup["root"] / "raw.pth"), "--CRVD_dir", str(setup["tree"]),
                       "--device", "cpu", "--isp", str(setup["root"] / "isp.pth"), "--results_json", str(out)])
    assert done.value.code == 0
    average = json.loads(out.read_text())["average"]
    assert set(average) == {"psnr", "ssim", "noisy_psnr", "noisy_ssim", "srgb_psnr", "srgb_ssim"}
    assert np.isfinite(average["srgb_psnr"])
    rgb = setup["root"] / "rgb.pth"
    save_denoiser(rgb, build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="zero"), {})
    with pytest.raises(SystemExit) as done:
        run_cli(main, ["--model_file", str(rgb), "--CRVD_dir", str(setup["tree"]), "--device", "cpu"])
    assert done.value.code == 2 and "is not a raw model" in capsys.readouterr().err


def test_results_json_may_not_overwrite_the_data(setup):
    with pytest.raises(UserError, match="would overwrite the input of --CRVD_dir"):
        main(["--model_file", str(setup["root"] / "raw.pth"), "--CRVD_dir", str(setup["tree"]),
              "--results_json", str(setup["tree"] / "r.json")])
