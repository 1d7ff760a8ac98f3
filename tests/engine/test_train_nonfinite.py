"""Non-finite losses are skipped and counted; a run of them stops training with a clear error."""
from __future__ import annotations

import pytest
import torch

import engine.train.step as engine_train_step
from engine.train.loop import MAX_NONFINITE_IN_A_ROW, build_arg_parser, train
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def nan_on_calls(monkeypatch, bad_calls):
    """Make the likelihood loss return NaN on the given 1-based call numbers."""
    real = engine_train_step.loglike_loss
    calls = {"n": 0}

    def loss(out, noisy, sigma):
        calls["n"] += 1
        value = real(out, noisy, sigma)
        return value * float("nan") if calls["n"] in bad_calls else value

    monkeypatch.setattr(engine_train_step, "loglike_loss", loss)


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    return make_sequence_folders(tmp_path_factory.mktemp("frames") / "train", 1, 6)


def test_isolated_nonfinite_steps_are_skipped_and_counted(monkeypatch, train_dir, tmp_path):
    nan_on_calls(monkeypatch, {3, 7})
    out = train(build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path)))  # 10 steps
    assert out["nonfinite_steps"] == 2
    assert out["history"][0]["nonfinite_steps"] == 2
    assert all(torch.isfinite(p).all() for p in out["model"].parameters())
    ckpt = load_checkpoint(tmp_path / "ckpt_e1.pth")
    # Adam counted 8 real steps, not 10.
    assert int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == 8


def test_a_run_of_nonfinite_steps_stops_and_keeps_the_last_checkpoint(monkeypatch, train_dir, tmp_path):
    nan_on_calls(monkeypatch, set(range(11, 100)))  # 8 steps per epoch: epoch 2 goes bad at its 3rd
    args = build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path, epochs=3, patches_per_epoch=16))
    with pytest.raises(UserError, match=rf"epoch 2, iteration {2 + MAX_NONFINITE_IN_A_ROW}: "
                                        rf"{MAX_NONFINITE_IN_A_ROW} non-finite .*ckpt_e1\.pth"):
        train(args)
    assert load_checkpoint(tmp_path / "ckpt_e1.pth")["args"]["epoch"] == 1
    assert not (tmp_path / "ckpt_e2.pth").exists()
