"""CRVD readers on tiny simulated trees in both folder layouts, and their one-line errors."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from datasets.crvd import CRVDTestDataset, CRVDTrainDataset, layout_dir, noise_parameters, packed, read_raw_sequence
from datasets.simulated_raw import clean_raw, mosaic_gbrg, write_simulated_crvd
from utils.errors import UserError
from utils.raw import pack_gbrg

SCENES, ISOS = (7, 8), (1600, 25600)


@pytest.fixture(scope="module", params=["stbn", "florn"])
def tree(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"crvd_{request.param}")
    return write_simulated_crvd(root, height=40, width=56, scenes=SCENES, isos=ISOS, captures=10,
                                layout=request.param), request.param


def test_mosaic_is_gbrg_and_packs_to_r_g_g_b():
    rgb = np.zeros((2, 4, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 2.0, 3.0  # R, G, B planes
    mosaic = mosaic_gbrg(rgb)
    assert mosaic.tolist() == [[2, 3, 2, 3], [1, 2, 1, 2]]
    assert pack_gbrg(torch.from_numpy(mosaic))[:, 0, 0].tolist() == [1, 2, 2, 3]  # R, G, G, B


def test_test_set_reads_both_layouts_in_iso_major_order_with_the_official_noise(tree):
    root, layout = tree
    assert layout_dir(root, "gt", 7, 1600, layout).is_dir()
    data = CRVDTestDataset(root, scenes=SCENES, isos=ISOS)
    assert [(item["iso"], item["scene"]) for item in data] == [(i, s) for i in ISOS for s in SCENES]
    for item in data:
        assert item["clean"].shape == item["noisy"].shape == (7, 4, 20, 28)
        assert 0 <= item["clean"].min() and item["clean"].max() <= 1
        # Poisson-Gaussian: the noise variance is a*x + b (checked on the mean, 20%).
        a, b = noise_parameters(item["iso"])
        noise = item["noisy"] - item["clean"]
        expected = (a * item["clean"] + b).mean()
        assert abs(noise.var() / expected - 1) < 0.2
    assert data[0]["noisy"].sub(data[0]["clean"]).abs().mean() < data[3]["noisy"].sub(data[3]["clean"]).abs().mean()


def test_training_crops_are_even_aligned_and_identical_for_clean_and_noisy(tree, monkeypatch):
    root, _ = tree
    data = CRVDTrainDataset(root, patch_size=8, patches_per_epoch=40, scenes=SCENES, isos=ISOS)
    positions = iter([3, 5])  # the crop's top and left, in units of 2 raw pixels
    monkeypatch.setattr(np.random, "randint", lambda low, high: next(positions))
    item = data[13]  # ISO 1600, scene 8, capture 3 (10 captures per scene, 20 per ISO)
    assert item["clean"].shape == (7, 4, 8, 8)
    full = CRVDTestDataset(root, scenes=(8,), isos=(1600,))[0]["clean"]
    assert torch.equal(item["clean"], full[:, :, 3:11, 5:13])
    a, _ = noise_parameters(1600)
    assert torch.equal(item["a"], a.view(1, 1, 1, 1))
    assert len(data) == 40


def test_clean_raw_uses_the_black_level_and_the_srgb_curve():
    white, black = np.full((1, 2, 2, 3), 255, np.uint8), np.zeros((1, 2, 2, 3), np.uint8)
    assert np.allclose(clean_raw(white), 4095) and np.allclose(clean_raw(black), 240)
    assert torch.allclose(packed(np.rint(clean_raw(white)).astype(np.uint16)), torch.ones(1, 4, 1, 1))


def test_bad_crvd_data_is_one_clear_line(tree, tmp_path):
    root, layout = tree
    broken = tmp_path / "crvd"
    shutil.copytree(root, broken)
    shutil.rmtree(layout_dir(broken, "noisy", 8, 25600, layout))
    with pytest.raises(UserError, match="CRVD folder for scene 8 ISO 25600 not found"):
        CRVDTestDataset(broken, scenes=SCENES, isos=ISOS)
    folder = layout_dir(broken, "gt", 7, 1600, layout)
    frame = folder / "frame3_clean_and_slightly_denoised.tiff"
    cv2.imwrite(str(frame), np.zeros((40, 56), np.uint8))
    with pytest.raises(UserError, match="holds uint8 samples; raw frames are 16-bit TIFFs"):
        read_raw_sequence(folder, "frame{t}_clean_and_slightly_denoised.tiff")
    cv2.imwrite(str(frame), np.zeros((39, 56), np.uint16))
    with pytest.raises(UserError, match="is 56x39; a Bayer frame has even sides"):
        read_raw_sequence(folder, "frame{t}_clean_and_slightly_denoised.tiff")
    cv2.imwrite(str(frame), np.zeros((38, 56), np.uint16))
    with pytest.raises(UserError, match="is 56x38 but frame 1 of that sequence is 56x40"):
        read_raw_sequence(folder, "frame{t}_clean_and_slightly_denoised.tiff")


def test_mirror_seq_appends_the_time_reversed_clip(tree):
    root, _ = tree
    np.random.seed(4)
    plain = CRVDTrainDataset(root, patch_size=8, patches_per_epoch=4, scenes=SCENES, isos=ISOS)[1]
    np.random.seed(4)
    mirrored = CRVDTrainDataset(root, patch_size=8, patches_per_epoch=4, scenes=SCENES, isos=ISOS,
                                mirror_seq=True)[1]
    assert mirrored["noisy"].shape == (14, 4, 8, 8)
    assert torch.equal(mirrored["noisy"][:7], plain["noisy"])
    assert torch.equal(mirrored["noisy"][7:], plain["noisy"].flip(0))
    assert torch.equal(mirrored["clean"][7:], plain["clean"].flip(0))
