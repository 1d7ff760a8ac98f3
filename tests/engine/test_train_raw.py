"""CRVD_train.py on tiny simulated raw: the official step, validation by hand, the Gaussian variant."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.crvd import CRVDTestDataset, CRVDTrainDataset, noise_parameters
from datasets.simulated_raw import write_simulated_crvd
from engine.inference.loading import load_denoiser
from engine.inference.sequence import denoise_sequence
from engine.train.loop import train
from engine.train.raw import build_arg_parser, raw_data
from engine.train.tasks import RawTask
from models import build_model
from tests.engine.synthetic import one_thread  # noqa: F401
from utils.errors import UserError
from utils.gaussian_hetero import hetero_posterior_mean
from utils.noise import PoissonGaussian
from utils.raw import blind_spot_mse, validation_psnr

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = ["--builtin_size", "40", "56"]


def _args(log_dir, *extra):
    return build_arg_parser().parse_args(
        ["--builtin", "bikes", *SIZE, "--num_resblocks", "2", "--num_channels", "8", "--patch_size", "8",
         "--batch_size", "2", "--patches_per_epoch", "6", "--epochs", "2", "--device", "cpu", "--num_workers", "0",
         "--flow", "zero", "--print_every", "1", "--log_dir", str(log_dir), *extra])


def test_official_defaults():
    args = build_arg_parser().parse_args(["--CRVD_dir", "x"])
    assert (args.model, args.num_resblocks, args.batch_size, args.epochs, args.milestones, args.gamma, args.lr,
            args.print_every, args.patch_size, args.patches_per_epoch, args.mirror_seq, args.raw_loss) == (
        "BR_d_c_raw", 15, 16, 12, [2, 4, 6, 8], 0.5, 1e-4, 100, 96, 256000, False, "mse")
    assert build_arg_parser().parse_args(["--CRVD_dir", "x", "--mirror_seq", "False"]).mirror_seq is False


def test_a_step_is_the_official_one_without_clipping():
    torch.manual_seed(0)
    model = build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero")
    twin = build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero")
    twin.load_state_dict(model.state_dict())
    noisy = torch.rand(2, 3, 4, 12, 12)
    item = {"noisy": noisy, "clean": noisy, "a": torch.full((2, 1, 1, 1, 1), 1e-3),
            "b": torch.full((2, 1, 1, 1, 1), 1e-4)}
    task = RawTask("mse", [])
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    result = task.step(model, optimizer, params, task.prepare(item, torch.device("cpu")), False, None, None)
    reference = torch.optim.Adam(twin.trainable_parameters(), lr=1e-3)
    loss = blind_spot_mse(twin(noisy)[0], noisy)
    loss.backward()
    grad_norm = torch.sqrt(sum(p.grad.square().sum() for p in twin.parameters() if p.grad is not None))
    assert grad_norm > 10  # clipping at 1 would change this step
    reference.step()
    assert result.loss == pytest.approx(float(loss.detach()), rel=1e-6)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name


@pytest.mark.slow
def test_training_writes_per_iso_validation_that_matches_a_by_hand_score(tmp_path):
    out = train(_args(tmp_path / "log"), data=raw_data)
    history = out["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    isos = [f"val_psnr_ISO{iso}" for iso in (1600, 3200, 6400, 12800, 25600)]
    last = history[-1]
    assert last["val_psnr"] == pytest.approx(np.mean([last[k] for k in isos]))   # the mean, not the sum
    tree = write_simulated_crvd(tmp_path / "tree", "bikes", 40, 56)
    model, checkpoint = load_denoiser(tmp_path / "log" / "ckpt_e2.pth", torch.device("cpu"))
    assert model.config.img_channels == 4 and model.config.head_outputs == 4
    for iso in (1600, 25600):
        scores = []
        for item in CRVDTestDataset(tree, isos=(iso,)):
            den = denoise_sequence(model, item["noisy"], 0.0)
            scores.append(np.mean([validation_psnr(d, c) for d, c in zip(den, item["clean"])]))
        assert last[f"val_psnr_ISO{iso}"] == pytest.approx(float(np.mean(scores)), abs=1e-6)
    assert (tmp_path / "log" / "curves.png").is_file()
    assert "psnr_ISO25600" in (tmp_path / "log" / "train.log").read_text()


@pytest.mark.slow
def test_gaussian_loss_trains_a_covariance_head_and_denoises_with_the_posterior(tmp_path):
    train(_args(tmp_path / "log", "--raw_loss", "gaussian", "--epochs", "1"), data=raw_data)
    model, _ = load_denoiser(tmp_path / "log" / "ckpt_e1.pth", torch.device("cpu"))
    assert model.config.head_outputs == 14
    tree = write_simulated_crvd(tmp_path / "tree", "bikes", 40, 56, isos=(6400,), scenes=(7,), captures=1)
    item = CRVDTestDataset(tree, scenes=(7,), isos=(6400,))[0]
    a, b = noise_parameters(6400)
    noise = PoissonGaussian(a, b)
    den = denoise_sequence(model, item["noisy"], noise)
    with torch.no_grad():
        out = model(item["noisy"][None])[0]
    by_hand = hetero_posterior_mean(out, item["noisy"][None], noise.variance(out[:, :, :4])).clamp(0, 1)[0]
    assert torch.allclose(den, by_hand, atol=1e-5)
    assert not torch.allclose(den, out[0, :, :4].clamp(0, 1), atol=1e-3)  # the noisy pixel is brought back in


@pytest.mark.slow
def test_bad_arguments_are_one_line_errors(tmp_path):
    for argv, message in ((["--epochs", "1"], "exactly one of --CRVD_dir"),
                          (["--CRVD_dir", str(tmp_path / "missing")], "not an existing folder"),
                          (["--builtin", "bikes", "--builtin_size", "41", "56"], "must be even")):
        with pytest.raises(UserError, match=message):
            raw_data(build_arg_parser().parse_args([*argv, "--log_dir", str(tmp_path / "log")]))
    with pytest.raises(UserError, match="too small for patch_size=96"):
        raw_data(build_arg_parser().parse_args(["--builtin", "bikes", *SIZE, "--log_dir", str(tmp_path / "l")]))
    assert not (tmp_path / "log").exists()
    assert isinstance(raw_data(_args(tmp_path / "ok"))[0], CRVDTrainDataset)
