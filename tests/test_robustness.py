"""Bad input, faults and recovery through the real entry points: exit code, message, files left.

The scripts' `main`s run in-process under `run_cli` (what `python <script>.py` does) unless a real
signal is needed; then a subprocess runs `python -m tests.test_robustness SIGNAL ARGS`, a training
whose epoch-2 checkpoint save is hit by SIGNAL after the data is written but before the rename.
Covered elsewhere, not repeated here: SIGKILL mid-epoch and --milestones (tests/engine/test_train_cli.py),
non-finite losses (test_train_nonfinite.py), GPU out-of-memory fallback (test_inference.py), mismatched
checkpoints and unwritable sRGB_test outputs (test_evaluate.py), undecodable videos (test_denoise_cli.py).
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import engine.commands.denoise_video as denoise_cli
import engine.commands.evaluate as evaluate_cli
import engine.train.loop as train_cli
from datasets.video_io import read_video, write_video
from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, tiny_argv
from utils import errors
from utils.checkpoint import load_checkpoint
from utils.errors import run_cli

TINY = ["--num_channels", "8", "--num_resblocks", "2", "--device", "cpu", "--flow", "zero"]


def break_checkpoint_save(epoch: int, fault):
    """A torch.save that calls `fault()` right after writing the checkpoint of `epoch` (before the rename)."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("args", {}).get("epoch") == epoch:
            f.flush()
            fault()

    return save


def cli(main, argv, capsys):
    """Run a script's `main` as `python <script>.py argv` does; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def the_error(err: str) -> str:
    """The one `error:` line of stderr (no traceback, no second error)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def _train(data, log, **change):
    return train_cli.main, tiny_argv(data, None, log, **change)


def _test(inputs, *extra, ckpt=None, data=None):
    return evaluate_cli.main, ["--model_file", ckpt or inputs["ckpt"], "--test_path", data or inputs["train"],
                               *TINY, *extra]


def _denoise(inputs, source, out, *extra):
    return denoise_cli.main, [source, "-o", out, "--model_file", inputs["ckpt"], *TINY, *extra]


# case -> (entry point and arguments given (inputs, output path), expected words of the error line)
BAD_INPUT = {
    "truncated frame": (lambda i, o: _train(i["truncated"], o),
                        "image '{truncated}/seq0/00003.png'"),
    "frames of two sizes": (lambda i, o: _train(i["mixed"], o),
                            "frames differ in size: '00000.png' is 48x40x3 but '00002.png' is 48x24x3"),
    "sequences shorter than --train_length": (lambda i, o: _train(i["train"], o, train_length=7),
                                              "has at least train_length=7 frames"),
    "frames smaller than --patch_size": (lambda i, o: _train(i["train"], o, patch_size=64),
                                         "frames are 48x40, smaller than patch_size=64"),
    "empty training folder": (lambda i, o: _train(i["root"] / "empty", o), "holds no sequence folders"),
    "--log_dir under a file": (lambda i, o: _train(i["train"], i["root"] / "blocker" / "log"),
                               "--log_dir: cannot create '{root}/blocker/log'"),
    "--noise_ival not a number": (lambda i, o: _train(i["train"], o, noise_ival="abc 30"),
                                  "--noise_ival: invalid float value: 'abc'"),
    "--val_noiseL zero": (lambda i, o: _train(i["train"], o, val_noiseL=0), "--val_noiseL: 0.0 is out of range"),
    "--noise_sigmas nan": (lambda i, o: _test(i, "--noise_sigmas", "nan", "--output_dir", o),
                           "--noise_sigmas: 'nan' is out of range"),
    "test folder without images": (lambda i, o: _test(i, "--output_dir", o, data=i["root"] / "no_images"),
                                   "no sequence folder in '{root}/no_images' holds images"),
    "not a checkpoint": (lambda i, o: _test(i, "--output_dir", o, ckpt=i["root"] / "junk.pth"),
                         "'{root}/junk.pth' is not a PyTorch checkpoint"),
    "truncated checkpoint": (lambda i, o: _test(i, "--output_dir", o, ckpt=i["root"] / "cut.pth"),
                             "checkpoint '{root}/cut.pth' is truncated or damaged"),
    "--sigma not a number": (lambda i, o: _denoise(i, i["train"] / "seq0", o, "--sigma", "thirty"),
                             "--sigma: 'thirty' is not a number"),
    "--sigma above 255": (lambda i, o: _denoise(i, i["train"] / "seq0", o, "--sigma", "256"),
                          "--sigma: '256' is out of range"),
    "video frames of two sizes": (lambda i, o: _denoise(i, i["mixed"] / "seq0", o, "--sigma", "30"),
                                  "frames differ in size"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(inputs, case, tmp_path, capsys):
    make, expected = BAD_INPUT[case]
    output = tmp_path / "output"
    main, argv = make(inputs, output)
    code, _, err = cli(main, argv, capsys)
    assert code == 2
    assert expected.format(**{k: v for k, v in inputs.items() if isinstance(v, Path)}) in the_error(err)
    assert not output.exists() and not (inputs["root"] / "blocker").is_dir()


def test_converted_odd_size_frames_evaluate_at_their_own_size_with_notes(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(errors, "_warned", set())  # each note is printed once per process
    seq = tmp_path / "Set8" / "seq0"
    seq.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (31, 45, 3), dtype=np.uint8)  # odd size: 45x31
    Image.fromarray(rgb[:, :, 0]).save(seq / "00000.png")  # gray
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA").save(seq / "00001.png")
    Image.fromarray(rgb).convert("P").save(seq / "00002.png")
    cv2.imwrite(str(seq / "00003.png"), rgb.astype(np.uint16) * 257)  # 16-bit
    (seq / "Thumbs.db").write_bytes(b"\0" * 10)
    out = tmp_path / "out"
    code, _, err = cli(evaluate_cli.main, ["--model_file", inputs["ckpt"], "--test_path", tmp_path / "Set8", *TINY,
                                           "--output_dir", out, "--results_json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    for words in ("skipped 1 file(s) that are not images", "alpha channel is ignored", "palette frames are expanded",
                  "gray frames are read as RGB", "16-bit frames are reduced to 8 bits"):
        assert sum(words in line for line in warnings) == 1, err
    assert sorted(p.name for p in (out / "seq0").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert all(cv2.imread(str(p)).shape == (31, 45, 3) for p in (out / "seq0").iterdir())
    assert (tmp_path / "r.json").is_file()


def test_bad_frame_in_a_later_sequence_keeps_earlier_outputs_whole(inputs, tmp_path, capsys):
    data = tmp_path / "Set8"
    shutil.copytree(inputs["train"] / "seq0", data / "a")
    shutil.copytree(inputs["truncated"] / "seq0", data / "b")
    out, results = tmp_path / "out", tmp_path / "r.json"
    code, _, err = cli(evaluate_cli.main, ["--model_file", inputs["ckpt"], "--test_path", data, *TINY,
                                           "--max_num_fr_per_seq", "4", "--output_dir", out,
                                           "--results_json", results], capsys)
    assert code == 2 and f"'{data}/b/00003.png'" in the_error(err)
    assert all(cv2.imread(str(out / "a" / f"{t:05d}.png")).shape == (40, 48, 3) for t in range(4))
    assert not (out / "b").exists() and not results.exists() and not temp_files(tmp_path)


def test_disk_full_while_writing_frames_leaves_the_output_as_it_was(inputs, tmp_path, capsys, monkeypatch):
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    out = tmp_path / "out"
    argv = _denoise(inputs, inputs["train"] / "seq0", out, "--sigma", "30")[1]
    monkeypatch.setattr(os, "replace", replace)
    code, _, err = cli(denoise_cli.main, argv, capsys)
    assert code == 2
    assert the_error(err) == f"error: cannot write '{out}/00002.png': No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half-written folder that looks finished
    # An existing output keeps its frames when the new write fails (--overwrite replaces only whole sets).
    monkeypatch.setattr(os, "replace", real_replace)
    assert cli(denoise_cli.main, argv, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls.clear()
    monkeypatch.setattr(os, "replace", replace)
    code, _, err = cli(denoise_cli.main, [*argv, "--overwrite", "--sigma", "20"], capsys)
    assert code == 2 and "No space left on device" in the_error(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert all(cv2.imread(str(p)).shape == (40, 48, 3) for p in out.iterdir())


def test_video_writer_losing_frames_is_an_error_and_the_old_video_stays(inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.mp4"
    write_video(out, np.zeros((2, 40, 48, 3), np.uint8), 10.0)
    before = out.read_bytes()
    real_writer = cv2.VideoWriter

    class FullDisk:
        """OpenCV's writer on a full disk: frames after the second are lost without an error."""

        def __init__(self, *args):
            self.writer, self.frames = real_writer(*args), 0

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return self.writer.isOpened()

        def write(self, frame):
            self.frames += 1
            if self.frames <= 2:
                self.writer.write(frame)

        def release(self):
            self.writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", FullDisk)
    argv = _denoise(inputs, inputs["train"] / "seq0", out, "--sigma", "30", "--overwrite")[1]
    code, _, err = cli(denoise_cli.main, argv, capsys)
    assert code == 2
    assert f"cannot write video '{out}'" in the_error(err) and "holds 2 of 6 frames" in the_error(err)
    assert out.read_bytes() == before and read_video(out)[0].shape == (2, 40, 48, 3)
    assert not temp_files(tmp_path)


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(inputs, tmp_path, capsys, monkeypatch):
    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", break_checkpoint_save(2, disk_full))
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, tmp_path, epochs=2, patches_per_epoch=2),
                       capsys)
    assert code == 2
    assert the_error(err) == f"error: cannot write checkpoint '{tmp_path}/ckpt_e2.pth': No space left on device"
    assert load_checkpoint(tmp_path / "ckpt_e1.pth")["args"]["epoch"] == 1
    assert not (tmp_path / "ckpt_e2.pth").exists() and not temp_files(tmp_path)


def _train_with_fault(signal_name: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.test_robustness", signal_name, *argv], cwd=REPO_ROOT,
                          env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_killed_while_saving_resumes_from_the_last_complete_checkpoint(inputs, tmp_path, capsys):
    argv = tiny_argv(inputs["train"], None, tmp_path, epochs=2, patches_per_epoch=2)
    killed = _train_with_fault("SIGKILL", argv)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "ckpt_e2.pth").exists() and len(temp_files(tmp_path)) == 1  # the unfinished save
    code, out, err = cli(train_cli.main, argv, capsys)
    assert code == 0, err
    assert "removed 1 temp file(s) left by an interrupted save: .ckpt_e2.pth." in out
    assert f"resuming from '{tmp_path}/ckpt_e1.pth' (epoch 1 of 2 done)" in out
    assert [row["epoch"] for row in load_checkpoint(tmp_path / "ckpt_e2.pth")["history"]] == [1, 2]
    assert not temp_files(tmp_path)


@pytest.mark.slow
def test_ctrl_c_while_saving_exits_130_and_keeps_the_last_checkpoint(inputs, tmp_path):
    interrupted = _train_with_fault("SIGINT", tiny_argv(inputs["train"], None, tmp_path, epochs=2,
                                                        patches_per_epoch=2))
    assert interrupted.returncode == 130
    assert "Traceback" not in interrupted.stderr and interrupted.stderr.strip().splitlines()[-1] == "interrupted"
    assert load_checkpoint(tmp_path / "ckpt_e1.pth")["args"]["epoch"] == 1
    assert not (tmp_path / "ckpt_e2.pth").exists() and not temp_files(tmp_path)


@pytest.mark.parametrize("script, variable, expected", [
    ("test.sh", "SET8_DIR", "is not a folder"),
    ("main.sh", "DAVIS_DIR", "is not a folder"),
    ("main.sh", "PWC_WEIGHTS", "is not a file"),
])
def test_shell_scripts_reject_a_bad_path_variable_in_one_line(tmp_path, script, variable, expected):
    env = {**SUBPROCESS_ENV, variable: str(tmp_path / "nowhere")}
    result = subprocess.run(["bash", str(REPO_ROOT / script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {variable}='{tmp_path}/nowhere' {expected} " + {
        "is not a folder": "(expected one sub-folder of frames per sequence)",
        "is not a file": "(the authors' network-default.pytorch)"}[expected]]


if __name__ == "__main__":  # python -m tests.test_robustness SIGNAL ARGS: a training hit while saving epoch 2
    hit = getattr(signal, sys.argv[1])
    # A shell's background job inherits SIGINT ignored; a user's Ctrl-C arrives with Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.save = break_checkpoint_save(2, lambda: os.kill(os.getpid(), hit))
    run_cli(train_cli.main, sys.argv[2:])
