"""In-process training runs on tiny synthetic folders: the official loop, its files and resume."""
from __future__ import annotations

import json
import math

import pytest
import torch

from engine.inference.loading import load_denoiser
from engine.train.loop import build_arg_parser, train
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from utils.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    return make_sequence_folders(root / "train"), make_sequence_folders(root / "val", 1, 5, seed=1)


def run(data_dirs, log_dir, **overrides):
    train_dir, val_dir = data_dirs
    return train(build_arg_parser().parse_args(tiny_argv(train_dir, val_dir, log_dir, **overrides)))


@pytest.mark.slow
def test_loss_falls_and_run_leaves_its_files(data_dirs, tmp_path):
    # 3 epochs x 10 steps, lr halved after epoch 2.
    out = run(data_dirs, tmp_path, epochs=3, milestones="2", gamma=0.5, lr=1e-3)
    history = out["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"] - 1.0, history
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-3, 5e-4])
    assert all(math.isfinite(row["val_psnr"]) and row["val_psnr"] > 10 for row in history)
    for name in ("ckpt_e1.pth", "ckpt_e2.pth", "ckpt_e3.pth", "train.log", "metrics.json",
                 "metrics.csv", "curves.png"):
        assert (tmp_path / name).is_file(), name
    ckpt = load_checkpoint(tmp_path / "ckpt_e3.pth")
    assert set(ckpt) >= {"args", "state_dict", "optimizer", "scheduler"}
    assert all(key.startswith("module.") for key in ckpt["state_dict"])
    assert ckpt["args"]["epoch"] == 3 and ckpt["args"]["flow_source"] == "zero"
    assert ckpt["args"]["num_channels"] == 8
    # Aligned with zero flow and not distilling: the untrained PWC-Net (9.4M parameters) is not stored.
    assert not any(key.startswith("module.pwcnet.") for key in ckpt["state_dict"])
    assert (tmp_path / "ckpt_e3.pth").stat().st_size < 4 << 20  # PWC-Net alone is 37 MB
    loaded, _ = load_denoiser(tmp_path / "ckpt_e3.pth", torch.device("cpu"))
    assert all(torch.equal(v, out["model"].state_dict()[k]) for k, v in loaded.state_dict().items()
               if not k.startswith("pwcnet."))
    # Adam holds exactly the denoiser's 5 groups; PWC-Net stays frozen.
    assert len(ckpt["optimizer"]["param_groups"]) == 5
    model = out["model"]
    n_denoiser = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert n_denoiser == sum(1 for n, p in model.named_parameters() if not n.startswith("pwcnet."))
    assert not any(p.requires_grad for p in model.pwcnet.parameters())
    assert json.loads((tmp_path / "metrics.json").read_text())[-1]["epoch"] == 3
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 4


@pytest.mark.slow
def test_resume_repeats_an_uninterrupted_run(data_dirs, tmp_path):
    short = {"patches_per_epoch": 8, "print_every": 2}  # 4 steps per epoch
    straight = run(data_dirs, tmp_path / "straight", epochs=2, **short)
    resumed_dir = tmp_path / "resumed"
    run(data_dirs, resumed_dir, epochs=1, **short)
    # Files that are not complete ckpt_e{N}.pth must not disturb resuming.
    (resumed_dir / "pretrained.pth").write_bytes(b"not a checkpoint")
    (resumed_dir / "ckpt_e7.pth").write_bytes(b"truncated")
    torch.save({"x": torch.zeros(1)}, resumed_dir / "ckpt_best.pth")
    resumed = run(data_dirs, resumed_dir, epochs=2, **short)
    assert resumed["start_epoch"] == 1
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["history"][1]["loss"] == straight["history"][1]["loss"]
    # A finished run says so and changes nothing.
    before = (resumed_dir / "ckpt_e2.pth").stat().st_mtime_ns
    again = run(data_dirs, resumed_dir, epochs=2, **short)
    assert again["start_epoch"] == 2 and again["history"] == resumed["history"]
    assert (resumed_dir / "ckpt_e2.pth").stat().st_mtime_ns == before
    assert "training already finished" in (resumed_dir / "train.log").read_text()


def test_without_validation_set_history_has_no_psnr(data_dirs, tmp_path):
    train_dir, _ = data_dirs
    out = train(build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path, patches_per_epoch=4)))
    assert out["history"][0]["val_psnr"] is None
    assert (tmp_path / "curves.png").is_file()


def test_time_budget_ends_the_epoch_cleanly_and_a_rerun_continues(data_dirs, tmp_path, capsys):
    """A budget far below one epoch: epoch 1 stops after its first step, is saved with its metrics
    and curves, training stops; the same command then continues with epoch 2."""
    out = run(data_dirs, tmp_path, epochs=3, patches_per_epoch=40, time_budget=1e-6)
    history = out["history"]
    assert [row["epoch"] for row in history] == [1] and history[0]["iterations"] == 1
    for name in ("ckpt_e1.pth", "metrics.json", "metrics.csv", "curves.png"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "ckpt_e2.pth").exists()
    assert "--time_budget of 1e-06 min spent: stopped after epoch 1 (1 of 20 iterations)" in capsys.readouterr().out
    again = run(data_dirs, tmp_path, epochs=3, patches_per_epoch=40, time_budget=1e-6)
    assert [row["epoch"] for row in again["history"]] == [1, 2]


def test_amp_on_the_cpu_warns_and_trains_in_float32(data_dirs, tmp_path, capsys):
    # CPU bf16 autocast gave NaN weight gradients in the dilated convolutions: every step skipped.
    train_dir, val_dir = data_dirs
    argv = tiny_argv(train_dir, val_dir, tmp_path, patches_per_epoch=8) + ["--amp"]
    out = train(build_arg_parser().parse_args(argv))
    assert "--amp trains in bf16 on CUDA only" in capsys.readouterr().err
    assert out["nonfinite_steps"] == 0 and math.isfinite(out["history"][0]["loss"])
