"""Reliability, round two: nothing a user owns is overwritten, every failure is one clear line.

Each case drives a real entry point (the scripts' `main` under `run_cli`, as `python <script>.py`
runs it, or a subprocess where a process boundary matters) and checks the exit code, the message
and the files left on disk. Fixtures and helpers come from tests/test_robustness.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import engine.commands.denoise_video as denoise_cli
import engine.commands.evaluate as evaluate_cli
import engine.train.loop as train_cli
import utils.checkpoint as checkpoint_module
from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, make_sequence_folders, tiny_argv
from tests.test_robustness import TINY, cli, temp_files, the_error
from utils.checkpoint import load_checkpoint, save_checkpoint


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _denoise_argv(inputs, source, out, *extra):
    return [source, "-o", out, "--model_file", inputs["ckpt"], *TINY, "--sigma", "30", *extra]


def _trained(tmp_path: Path, inputs, epochs: int = 1) -> tuple[list[str], Path]:
    log = tmp_path / "log"
    argv = tiny_argv(inputs["train"], None, log, epochs=epochs, patches_per_epoch=2)
    assert train_cli.main(argv) == 0
    return argv, log


# ------------------------------------------------------------------ 1-3: outputs over inputs

@pytest.mark.parametrize("where", ["equal", "inside"])
def test_srgb_test_refuses_an_output_dir_in_the_test_path(inputs, tmp_path, capsys, where):
    data = tmp_path / "Set8"
    shutil.copytree(inputs["train"], data)
    before = _files(data)
    out = data if where == "equal" else data / "seq0" / "out"
    code, _, err = cli(evaluate_cli.main, ["--model_file", inputs["ckpt"], "--test_path", data, *TINY,
                                           "--output_dir", out], capsys)
    assert code == 2 and f"--output_dir '{out}' would overwrite the input of --test_path" in the_error(err)
    assert _files(data) == before


def test_denoise_refuses_to_write_frames_into_the_input_frames_folder(inputs, tmp_path, capsys):
    folder = tmp_path / "frames"
    shutil.copytree(inputs["train"] / "seq0", folder)
    before = _files(folder)
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, folder / "00000.png", folder), capsys)
    assert code == 2 and "is the folder of the input" in the_error(err)
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, folder, folder / "sub"), capsys)
    assert code == 2 and "would overwrite the input of the input" in the_error(err)
    assert _files(folder) == before


def test_save_model_never_replaces_the_model_or_a_training_checkpoint(inputs, tmp_path, capsys):
    _, log = _trained(tmp_path, inputs)
    training_ckpt = log / "ckpt_e1.pth"
    before = training_ckpt.read_bytes()
    source = inputs["train"] / "seq0"
    for target in (inputs["ckpt"], training_ckpt):
        model_file = ["--model_file", target] if target == training_ckpt else []
        code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, source, tmp_path / "out", "--finetune", "1",
                                                           "--save_model", target, *model_file), capsys)
        assert code == 2 and "--save_model" in the_error(err)
    assert training_ckpt.read_bytes() == before and not (tmp_path / "out").exists()
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, source, tmp_path / "out", "--finetune", "1",
                                                       "--save_model", training_ckpt, "--model_file",
                                                       inputs["ckpt"]), capsys)
    assert code == 2 and "is a resumable training checkpoint" in the_error(err)


# ------------------------------------------------------------------ 4-5: one run per log_dir

HOLD_LOCK = """
import sys, time
from utils.lock import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_training_on_the_same_log_dir_is_refused_and_a_dead_holder_blocks_nothing(inputs, tmp_path,
                                                                                           capsys):
    log = tmp_path / "log"
    log.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(log)], cwd=REPO_ROOT, env=SUBPROCESS_ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = tiny_argv(inputs["train"], None, log, patches_per_epoch=2)
        code, out, err = cli(train_cli.main, argv, capsys)
        assert code == 2 and f"--log_dir '{log}' is in use by another run (pid {holder.pid})" in the_error(err)
        assert not list(log.glob("ckpt_e*.pth")) and not (log / "train.log").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, _, err = cli(train_cli.main, argv, capsys)  # the lock died with its process
    assert code == 0, err
    assert (log / "ckpt_e1.pth").is_file()


def test_rerunning_a_finished_run_rewrites_its_history_files(inputs, tmp_path, capsys):
    argv, log = _trained(tmp_path, inputs)
    history = load_checkpoint(log / "ckpt_e1.pth")["history"]
    for name in ("metrics.json", "metrics.csv", "curves.png"):  # a kill after the rename left none
        (log / name).unlink()
    code, out, _ = cli(train_cli.main, argv, capsys)
    assert code == 0 and "training already finished" in out
    assert json.loads((log / "metrics.json").read_text()) == history
    assert (log / "metrics.csv").is_file() and (log / "curves.png").stat().st_size > 1000


# ------------------------------------------------------------------ 6-7: faults inside torch.save

class _FaultyFile:
    """A checkpoint file whose writes fail after `good` bytes with `fault`."""

    def __init__(self, path: Path, fault: BaseException, good: int = 4096):
        self.file = open(path, "wb")
        self.fault, self.left = fault, good

    def write(self, data):
        if len(data) > self.left:
            raise self.fault
        self.left -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("fault, code, words", [
    (OSError(28, "No space left on device"), 2, "cannot write checkpoint '{log}/ckpt_e2.pth': No space left on device"),
    (KeyboardInterrupt(), 130, None),
])
def test_a_fault_while_torch_save_writes_is_reported_as_itself(inputs, tmp_path, capsys, monkeypatch, fault, code,
                                                               words):
    argv, log = _trained(tmp_path, inputs)
    first = (log / "ckpt_e1.pth").read_bytes()
    monkeypatch.setattr(checkpoint_module, "_open_for_writing", lambda path: _FaultyFile(path, fault))
    got, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert got == code and "RuntimeError" not in err and "unexpected pos" not in err
    if words:
        assert words.format(log=log) in the_error(err)
    else:
        assert err.strip().splitlines()[-1] == "interrupted"
    assert (log / "ckpt_e1.pth").read_bytes() == first and not (log / "ckpt_e2.pth").exists()
    assert not temp_files(log)


# ------------------------------------------------------------------ 8: sizes

def test_small_frames_train_with_dis_and_evaluation_names_the_ssim_minimum(inputs, tmp_path, capsys):
    tiny = make_sequence_folders(tmp_path / "tiny", 1, 4, height=12, width=64)
    argv = tiny_argv(tiny, None, tmp_path / "log", patch_size=8, flow="dis", patches_per_epoch=2)
    code, _, err = cli(train_cli.main, argv, capsys)
    assert code == 0, err  # OpenCV DIS alone crashes on 12-row frames; the flow pads them
    small = make_sequence_folders(tmp_path / "small", 1, 2, height=10, width=10)
    code, _, err = cli(evaluate_cli.main, ["--model_file", inputs["ckpt"], "--test_path", small, *TINY,
                                           "--no_save"], capsys)
    assert code == 2 and "frames are 10x10; the official SSIM needs at least 11x11 pixels" in the_error(err)
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, tiny / "seq0", tmp_path / "out.mp4", "--flow", "dis"),
                       capsys)
    assert code == 0, err


# ------------------------------------------------------------------ 9, 12, 17: checkpoints on resume and load

def test_a_weights_only_ckpt_in_log_dir_is_skipped_with_a_note(inputs, tmp_path, capsys):
    argv, log = _trained(tmp_path, inputs)
    weights = load_checkpoint(log / "ckpt_e1.pth")
    save_checkpoint(log / "ckpt_e5.pth", {"state_dict": weights["state_dict"]})
    code, out, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert code == 0, err
    assert f"not resuming from '{log}/ckpt_e5.pth': it holds weights only" in err
    assert f"resuming from '{log}/ckpt_e1.pth'" in out and (log / "ckpt_e2.pth").is_file()


def test_nan_weights_are_refused_everywhere_and_never_saved(inputs, tmp_path, capsys):
    argv, log = _trained(tmp_path, inputs)
    broken = load_checkpoint(log / "ckpt_e1.pth")
    key = next(k for k in broken["state_dict"] if k.endswith("d2.convs.0.weight"))
    broken["state_dict"][key] = torch.full_like(broken["state_dict"][key], float("nan"))
    save_checkpoint(log / "ckpt_e1.pth", broken)
    nan_file = log / "ckpt_e1.pth"
    code, _, err = cli(evaluate_cli.main, ["--model_file", nan_file, "--test_path", inputs["train"], *TINY,
                                           "--no_save", "--results_json", tmp_path / "r.json"], capsys)
    assert code == 2 and "holds NaN or inf weights (d2.convs.0.weight)" in the_error(err)
    assert not (tmp_path / "r.json").exists()
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, inputs["train"] / "seq0", tmp_path / "o.mp4",
                                                       "--model_file", nan_file), capsys)
    assert code == 2 and "NaN or inf" in the_error(err) and not (tmp_path / "o.mp4").exists()
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert code == 2 and "NaN or inf" in the_error(err) and not (log / "ckpt_e2.pth").exists()


def test_a_finished_run_with_a_bad_option_shows_only_the_error(inputs, tmp_path, capsys):
    _, log = _trained(tmp_path, inputs)
    code, out, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, patches_per_epoch=2) + ["--no_bsa"],
                         capsys)
    assert code == 2 and "--no_bsa: the run in" in the_error(err)
    assert "training already finished" not in out


# ------------------------------------------------------------------ 10: permissions

def _as_other_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a script as a user without access to the test's private files (root reads everything)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("cannot run Python as another user here (no setpriv)")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        probe = subprocess.run([*prefix, sys.executable, "-c", "import torch"], capture_output=True, timeout=120)
        if probe.returncode != 0:
            pytest.skip("cannot run Python as another user here")
    env = {**SUBPROCESS_ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*prefix, sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_unreadable_folders_and_checkpoints_are_one_line_in_every_script(inputs):
    shared = Path(tempfile.mkdtemp(prefix="stbn-perm-"))  # reachable by the other user
    try:
        data, frames = shared / "data", shared / "frames"
        shutil.copytree(inputs["train"], data)
        shutil.copytree(inputs["train"] / "seq0", frames)
        ckpt, locked_ckpt = shared / "tiny.pth", shared / "locked.pth"
        shutil.copy(inputs["ckpt"], ckpt)
        shutil.copy(inputs["ckpt"], locked_ckpt)
        for path in [shared, *shared.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o644)
        locked_folder = data / "seq0"
        os.chmod(locked_folder, 0o000)
        os.chmod(locked_ckpt, 0o000)
        cases = {
            "sRGB_test.py": (["--model_file", ckpt, "--test_path", data, *TINY, "--no_save"],
                             f"cannot read folder '{locked_folder}': Permission denied"),
            "denoise.py": ([frames, "-o", shared / "o.mp4", "--model_file", locked_ckpt, *TINY, "--sigma", "30"],
                           f"cannot read checkpoint '{locked_ckpt}': Permission denied"),
            "sRGB_train_bsn.py": (tiny_argv(data, None, shared / "log"),
                                  f"cannot read folder '{locked_folder}': Permission denied"),
        }
        for script, (argv, expected) in cases.items():
            run = _as_other_user([script, *map(str, argv)], REPO_ROOT)
            assert run.returncode == 2, (script, run.stderr[-2000:])
            assert expected in the_error(run.stderr), script
    finally:
        for path in [shared, *shared.rglob("*")]:
            try:
                os.chmod(path, 0o777)
            except OSError:
                pass
        shutil.rmtree(shared, ignore_errors=True)


# ------------------------------------------------------------------ 11, 20: arguments and odd inputs

def test_an_absurd_integer_is_a_range_error_not_an_overflow(inputs, tmp_path, capsys):
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, inputs["train"] / "seq0", tmp_path / "o.mp4",
                                                       "--finetune", "99999999999999999999"), capsys)
    assert code == 2 and "--finetune: 99999999999999999999 is out of range" in the_error(err)
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, tmp_path / "log", epochs=10 ** 20), capsys)
    assert code == 2 and "--epochs" in the_error(err) and not (tmp_path / "log").exists()


@pytest.mark.slow
def test_a_fifo_as_input_is_refused_without_blocking(inputs, tmp_path):
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    run = subprocess.run([sys.executable, "denoise.py", *map(str, _denoise_argv(inputs, fifo, tmp_path / "o.mp4"))],
                         cwd=REPO_ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "is not a regular file or folder" in the_error(run.stderr)


# ------------------------------------------------------------------ 13-15: frame folders

def test_a_broken_symlink_frame_is_an_error_not_a_renumbering(inputs, tmp_path, capsys):
    folder = tmp_path / "frames"
    shutil.copytree(inputs["train"] / "seq0", folder)
    (folder / "00002.png").unlink()
    (folder / "00002.png").symlink_to(tmp_path / "gone.png")
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, folder, tmp_path / "out"), capsys)
    assert code == 2 and f"frame '{folder}/00002.png' is a broken symbolic link" in the_error(err)
    assert not (tmp_path / "out").exists()


def test_unpadded_frame_names_are_read_in_time_order(inputs, tmp_path, capsys):
    """0.png .. 11.png with frame k = grey 20k: at a tiny sigma the posterior returns (nearly) the
    input, so output frame k must be about grey 20k (lexicographic order puts 10.png after 1.png)."""
    folder = tmp_path / "unpadded"
    folder.mkdir()
    for k in range(12):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((24, 32, 3), 20 * k, np.uint8))
    argv = [folder, "-o", tmp_path / "out", "--model_file", inputs["ckpt"], *TINY, "--sigma", "0.01"]
    code, _, err = cli(denoise_cli.main, argv, capsys)
    assert code == 0, err
    means = [cv2.imread(str(tmp_path / "out" / f"{k:05d}.png")).mean() for k in range(12)]
    assert all(a < b for a, b in zip(means, means[1:])), means  # 10.png after 1.png would break this
    assert all(abs(m - 20 * k) <= 0.1 * 20 * k + 1 for k, m in enumerate(means)), means


def test_a_non_empty_output_folder_needs_overwrite_which_removes_older_extra_frames(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    longer = make_sequence_folders(tmp_path / "long", 1, 8)
    assert cli(denoise_cli.main, _denoise_argv(inputs, longer / "seq0", out), capsys)[0] == 0
    shorter = inputs["train"] / "seq0"  # 6 frames
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, shorter, out), capsys)
    assert code == 2 and "is a folder that is not empty; pass --overwrite" in the_error(err)
    assert len(list(out.iterdir())) == 8
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, shorter, out, "--overwrite"), capsys)
    assert code == 0 and "removed 2 frame(s) of an earlier, longer output (00006.png .. 00007.png)" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{t:05d}.png" for t in range(6)]
    # sRGB_test clears the frames it owns beyond a shorter rerun, and says so.
    test_argv = ["--model_file", inputs["ckpt"], "--test_path", inputs["train"], *TINY, "--output_dir", tmp_path / "e"]
    assert cli(evaluate_cli.main, test_argv, capsys)[0] == 0
    code, _, err = cli(evaluate_cli.main, [*test_argv, "--max_num_fr_per_seq", "4"], capsys)
    assert code == 0 and "removed 2 frame(s) of an earlier, longer output" in err
    assert len(list((tmp_path / "e" / "seq0").iterdir())) == 4


# ------------------------------------------------------------------ 18-19: wording and leftovers

def test_messages_name_the_real_problem(inputs, tmp_path, capsys):
    folder_ckpt = subprocess.run(["bash", "test.sh", str(tmp_path)], cwd=REPO_ROOT, env=SUBPROCESS_ENV,
                                 capture_output=True, text=True, timeout=300)
    assert folder_ckpt.returncode == 2 and f"checkpoint '{tmp_path}' is a folder" in folder_ckpt.stderr
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, inputs["train"] / "seq0", "/proc/out.mp4"), capsys)
    assert code == 2 and "no file can be created in '/proc'" in the_error(err)
    code, _, err = cli(train_cli.main, tiny_argv(inputs["truncated"], None, tmp_path / "log"), capsys)
    assert code == 2 and "[ WARN" not in err


def test_failed_starts_leave_no_log_dir_and_stale_temp_videos_are_removed(inputs, tmp_path, capsys):
    for change, words in ((["--model", "bdc_3"], "--model: unknown model 'bdc_3'"),
                          (["--pwc_weights", str(inputs["root"] / "junk.pth")], "is not a PyTorch checkpoint")):
        log = tmp_path / f"log{len(words)}"
        code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log) + change, capsys)
        assert code == 2 and words in the_error(err)
        assert not log.exists()
    stale = tmp_path / ".out.mp4.deadbeef.tmp.mp4"  # what a killed denoise.py leaves
    stale.write_bytes(b"half a video")
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, inputs["train"] / "seq0", tmp_path / "out.mp4"), capsys)
    assert code == 0, err
    assert not stale.exists() and (tmp_path / "out.mp4").is_file()


def test_a_log_dir_inside_the_training_data_is_refused(inputs, tmp_path, capsys):
    data = tmp_path / "train"
    shutil.copytree(inputs["train"], data)
    before = _files(data)
    code, _, err = cli(train_cli.main, tiny_argv(data, None, data / "seq0" / "log"), capsys)
    assert code == 2 and "--log_dir" in the_error(err) and "would overwrite the input of --trainset_dir" in err
    assert _files(data) == before


def test_non_finite_weights_are_never_saved(inputs, tmp_path, capsys, monkeypatch):
    """Weights that went bad during an epoch stop training before its checkpoint is written."""
    argv, log = _trained(tmp_path, inputs)
    from engine.train.tasks import SrgbTask
    real_validate = SrgbTask.validate

    def poisoning(self, model, *args):
        with torch.no_grad():
            model.d2.convs[0].weight.fill_(float("inf"))
        return real_validate(self, model, *args)

    monkeypatch.setattr(SrgbTask, "validate", poisoning)
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert code == 2 and "training diverged: the weights hold NaN or inf after epoch 2" in the_error(err)
    assert f"the last good checkpoint is '{log}/ckpt_e1.pth'" in err and not (log / "ckpt_e2.pth").exists()
