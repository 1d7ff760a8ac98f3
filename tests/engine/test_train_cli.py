"""The training script as a user runs it: argument errors, and resuming after a hard kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.train.loop import build_arg_parser, validate_args
from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, make_sequence_folders, tiny_argv
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

SCRIPT = str(REPO_ROOT / "sRGB_train_bsn.py")


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    return make_sequence_folders(tmp_path_factory.mktemp("frames") / "train", 1, 6)


@pytest.mark.parametrize("change, message", [
    ({"milestones": "4 2"}, "--milestones must be positive epochs in increasing order"),
    ({"noise_ival": "55 5"}, "--noise_ival: the interval 55 5 is reversed"),
    ({"noise_ival": "0 30"}, "--noise_ival: 0.0 is out of range"),
    ({"val_noiseL": "300"}, "--val_noiseL: 300.0 is out of range"),
    ({"lr": "-1"}, "--lr must be a positive number"),
    ({"train_length": "1"}, "--train_length must be at least 2"),
    ({"pwc_weights": "/nonexistent/pwc.pth"}, "--pwc_weights: '/nonexistent/pwc.pth' is not an existing file"),
])
def test_bad_arguments_are_user_errors(train_dir, tmp_path, change, message):
    args = build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path / "log", **change))
    with pytest.raises(UserError) as info:
        validate_args(args)
    assert message in str(info.value)


def test_missing_or_conflicting_data_sources(tmp_path, train_dir):
    parse = build_arg_parser().parse_args
    with pytest.raises(UserError, match="--trainset_dir: '.*nowhere' is not an existing folder"):
        validate_args(parse(["--trainset_dir", str(tmp_path / "nowhere")]))
    with pytest.raises(UserError, match="exactly one of --trainset_dir"):
        validate_args(parse(["--trainset_dir", str(train_dir), "--builtin", "bikes"]))
    with pytest.raises(UserError, match="exactly one of --trainset_dir"):
        validate_args(parse([]))
    with pytest.raises(UserError, match="invalid choice"):
        parse(["--flow", "spynet"])


def test_official_defaults():
    args = build_arg_parser().parse_args(["--builtin", "bikes"])
    assert (args.model, args.num_resblocks, args.train_length, args.batch_size, args.epochs) == \
        ("bdc_2_unify", 5, 8, 4, 10)
    assert (args.milestones, args.gamma, args.lr, args.print_every) == ([2, 4, 6, 8], 0.5, 3e-4, 200)
    assert (args.val_noiseL, args.patch_size, args.patches_per_epoch) == (30, 96, 32000)
    assert build_arg_parser().parse_args(["--e", "3", "--p", "64", "--n", "8"]).epochs == 3
    validate_args(args)
    assert args.log_dir == "logs/builtin" and args.noise_ival == [5, 55]  # per model, see test_checkpoint_meaning


def run_script(argv, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, SCRIPT, *argv], cwd=REPO_ROOT, stdout=log, stderr=log,
                                env=SUBPROCESS_ENV)


@pytest.mark.slow
def test_script_reports_bad_argument_in_one_line(tmp_path, train_dir):
    proc = subprocess.run([sys.executable, SCRIPT, *tiny_argv(train_dir, None, tmp_path, milestones="4 2")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --milestones must be positive epochs in increasing order, got 4 2"]


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(tmp_path, train_dir):
    log_dir = tmp_path / "run"
    # 24 steps per epoch: long enough to be killed inside epoch 2.
    argv = tiny_argv(train_dir, None, log_dir, epochs=2, patches_per_epoch=48, print_every=1000)
    proc = run_script(argv, tmp_path / "first.out")
    deadline = time.monotonic() + 240
    while not (log_dir / "ckpt_e1.pth").exists():
        assert proc.poll() is None, (tmp_path / "first.out").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert not (log_dir / "ckpt_e2.pth").exists(), "epoch 2 ended before the kill; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    second = run_script(argv, tmp_path / "second.out")
    assert second.wait(timeout=240) == 0, (tmp_path / "second.out").read_text()
    output = (tmp_path / "second.out").read_text()
    assert "resuming from" in output and "ckpt_e1.pth' (epoch 1 of 2 done)" in output
    assert "epochs 2..2" in output
    checkpoints = sorted(p.name for p in log_dir.glob("ckpt_e*.pth"))
    assert checkpoints == ["ckpt_e1.pth", "ckpt_e2.pth"]
    history = load_checkpoint(log_dir / "ckpt_e2.pth")["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    for name in checkpoints:
        assert load_checkpoint(log_dir / name)["args"]["epoch"] == int(name[6])


def test_compile_option_compiles_the_training_forward(train_dir, tmp_path, monkeypatch):
    """--compile wraps the network that trains (not the model that is saved and validated)."""
    import torch

    from engine.train.loop import train

    compiled = []

    def fake_compile(module):
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    argv = tiny_argv(train_dir, None, tmp_path, patches_per_epoch=2) + ["--compile"]
    out = train(build_arg_parser().parse_args(argv))
    assert compiled == [out["model"]] and (tmp_path / "ckpt_e1.pth").is_file()
