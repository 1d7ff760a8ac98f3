"""`--init_weights`: a new training run that starts from a shipped denoiser's weights."""
from __future__ import annotations

import pytest
import torch

from engine.commands.export_denoiser import export_denoiser
from engine.train.loop import build_arg_parser, train, validate_args
from engine.train.setup import build_training_model
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(training folder, a one-epoch run's exported denoiser file)."""
    root = tmp_path_factory.mktemp("init")
    train_dir = make_sequence_folders(root / "train", 1, 6)
    argv = tiny_argv(train_dir, None, root / "first", seed=3)
    train(build_arg_parser().parse_args(argv))
    return train_dir, export_denoiser(str(root / "first" / "ckpt_e1.pth"), str(root / "denoiser.pth"))


def parsed(argv: list[str]):
    args = build_arg_parser().parse_args(argv)
    validate_args(args)
    return args


def test_new_run_starts_from_the_files_weights(trained, tmp_path):
    train_dir, denoiser = trained
    expected = {k.removeprefix("module."): v for k, v in load_checkpoint(denoiser)["state_dict"].items()}
    started = build_training_model(parsed(tiny_argv(train_dir, None, tmp_path / "a", init_weights=denoiser)),
                                   None, CPU).state_dict()
    fresh = build_training_model(parsed(tiny_argv(train_dir, None, tmp_path / "b")), None, CPU).state_dict()
    trainable = [k for k in expected if not k.startswith("pwcnet.")]
    assert trainable and all(torch.equal(started[k], expected[k]) for k in trainable)
    assert not all(torch.equal(fresh[k], expected[k]) for k in trainable)


def test_run_from_weights_trains_and_logs_it(trained, tmp_path):
    train_dir, denoiser = trained
    summary = train(build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path / "c", init_weights=denoiser)))
    assert f"starting from the weights of '{denoiser}'" in (tmp_path / "c" / "train.log").read_text()
    checkpoint = load_checkpoint(tmp_path / "c" / "ckpt_e1.pth")
    assert checkpoint["args"]["init_weights"] == str(denoiser) and summary["start_epoch"] == 0


def test_other_configuration_is_refused_in_one_line(trained, tmp_path):
    train_dir, denoiser = trained
    args = parsed(tiny_argv(train_dir, None, tmp_path / "d", init_weights=denoiser, num_channels=12))
    with pytest.raises(UserError, match=r"--num_channels: --init_weights '.*' was trained with num_channels=8, not 12"):
        build_training_model(args, None, CPU)


def test_missing_file_is_refused(trained, tmp_path):
    train_dir, _ = trained
    with pytest.raises(UserError, match="--init_weights: '/nonexistent.pth' is not an existing file"):
        parsed(tiny_argv(train_dir, None, tmp_path / "e", init_weights="/nonexistent.pth"))


def test_a_run_to_resume_wins_over_init_weights(trained, tmp_path):
    """Rerunning the same command must continue the run, not restart it from the file."""
    train_dir, denoiser = trained
    argv = tiny_argv(train_dir, None, tmp_path / "f", init_weights=denoiser, epochs=2, seed=5, lr=0.01)
    train(build_arg_parser().parse_args(argv))
    resume = load_checkpoint(tmp_path / "f" / "ckpt_e1.pth")
    model = build_training_model(parsed(argv), resume, CPU).state_dict()
    saved = {k.removeprefix("module."): v for k, v in resume["state_dict"].items()}
    start = {k.removeprefix("module."): v for k, v in load_checkpoint(denoiser)["state_dict"].items()}
    trainable = [k for k in saved if not k.startswith("pwcnet.")]
    assert all(torch.equal(model[k], saved[k]) for k in trainable)
    assert not all(torch.equal(model[k], start[k]) for k in trainable)
