"""Reliability, round three: outputs refused instead of wrong, nothing replaced without asking.

Each case drives a real entry point and checks the exit code, the message and the files on disk.
Fixtures and helpers come from tests/test_robustness.py.
"""
from __future__ import annotations

import pytest
import torch

import engine.commands.denoise_video as denoise_cli
import engine.commands.evaluate as evaluate_cli
import engine.train.loop as train_cli
from engine.commands.export_denoiser import main as export_main
from engine.inference import scoring
from tests.engine.synthetic import tiny_argv
from tests.test_robustness import TINY, cli, the_error
from utils.checkpoint import load_checkpoint
from utils.errors import UserError


def _denoise_argv(inputs, out, *extra):
    return [inputs["train"] / "seq0", "-o", out, "--model_file", inputs["ckpt"], *TINY, "--sigma", "30", *extra]


def test_an_existing_video_is_replaced_only_with_overwrite(inputs, tmp_path, capsys):
    out = tmp_path / "holiday.mp4"
    out.write_bytes(b"someone's video")
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, out), capsys)
    assert code == 2 and f"-o/--output '{out}' already exists; pass --overwrite" in the_error(err)
    assert out.read_bytes() == b"someone's video"
    code, _, _ = cli(denoise_cli.main, _denoise_argv(inputs, out, "--overwrite"), capsys)
    assert code == 0 and out.read_bytes()[4:8] == b"ftyp"


def test_an_empty_output_name_is_refused_and_nothing_is_written(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "00099.png").write_bytes(b"keep me")
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, "", "--overwrite"), capsys)
    assert code == 2 and "-o/--output is empty (an unset shell variable?)" in the_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00099.png"]


def test_a_new_folder_with_a_dot_in_its_name_is_a_frame_folder(inputs, tmp_path, capsys):
    out = tmp_path / "out.v2"
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, out), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [f"{t:05d}.png" for t in range(6)]
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, tmp_path / "frame.png"), capsys)
    assert code == 2 and "unsupported extension '.png'" in the_error(err)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(64), b"\x00\x00\x00\x18ftypmp42" + bytes(64),
                                     bytes(range(7, 200))])
def test_a_picture_video_or_random_bytes_is_not_a_checkpoint(inputs, tmp_path, capsys, content):
    fake = tmp_path / "model.pth"
    fake.write_bytes(content)
    code, _, err = cli(evaluate_cli.main, ["--model_file", fake, "--test_path", inputs["train"], *TINY, "--no_save"],
                       capsys)
    assert code == 2 and f"'{fake}' is not a PyTorch checkpoint" in the_error(err)
    assert "unpickle" not in err


def test_a_complete_legacy_format_checkpoint_is_resumed_not_overwritten(inputs, tmp_path, capsys):
    log = tmp_path / "log"
    argv = tiny_argv(inputs["train"], None, log, epochs=1, patches_per_epoch=2)
    assert cli(train_cli.main, argv, capsys)[0] == 0
    first = load_checkpoint(log / "ckpt_e1.pth")
    torch.save(first, log / "ckpt_e1.pth", _use_new_zipfile_serialization=False)
    legacy = (log / "ckpt_e1.pth").read_bytes()
    code, out, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert code == 0 and "skipping incomplete checkpoint" not in err
    assert (log / "ckpt_e1.pth").read_bytes() == legacy
    assert load_checkpoint(log / "ckpt_e2.pth")["history"][0] == first["history"][0]


def test_export_over_a_training_checkpoint_names_its_own_option(inputs, tmp_path, capsys):
    log = tmp_path / "log"
    assert cli(train_cli.main, tiny_argv(inputs["train"], None, log, patches_per_epoch=2), capsys)[0] == 0
    target = log / "ckpt_e1.pth"
    before = target.read_bytes()
    code, _, err = cli(export_main, [inputs["ckpt"], "-o", target], capsys)
    assert code == 2 and f"-o/--output '{target}' is a resumable training checkpoint" in the_error(err)
    assert "--save_model" not in err and target.read_bytes() == before


def test_a_non_finite_frame_is_refused_before_anything_is_written(monkeypatch):
    """sRGB_test.py writes its PNGs from the scoring step's callback: a NaN frame never reaches it."""
    clean = torch.rand(3, 3, 16, 16)

    def nan_frames(model, noisy, sigma, memory, **options):
        for t in range(noisy.shape[0]):
            yield t, torch.full_like(noisy[t], float("nan"))

    monkeypatch.setattr(scoring, "denoise_frames", nan_frames)
    written = []
    with pytest.raises(UserError, match="denoised frame 0 is not finite"):
        scoring.score_sequence(None, clean, 0.1, on_frame=lambda t, frame: written.append(t))
    assert written == []
    _, score = scoring.score_sequence(None, clean, 0.1, on_frame=lambda t, f: written.append(t), require_finite=False)
    assert written == [0, 1, 2] and not score.finite  # validation sees NaN, not an error


def _overflowing(model) -> None:
    """Finite weights whose outputs overflow: what a training at an absurd learning rate leaves."""
    with torch.no_grad():
        for name, value in model.named_parameters():
            if not name.startswith("pwcnet."):
                value.fill_(1e30)


def _overflowing_checkpoint(path, model_name: str):
    """A tiny checkpoint of `model_name` with finite weights whose outputs are NaN."""
    from engine.inference.loading import save_denoiser
    from models import build_model
    torch.manual_seed(0)
    model = build_model(model_name, num_channels=8, num_resblocks=2, flow="zero")
    _overflowing(model)
    save_denoiser(path, model, {})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["SrgbTask", "RawTask"])
def test_an_epoch_with_nan_validation_outputs_is_not_a_good_one(inputs, tmp_path, capsys, monkeypatch, task_name):
    from engine.train import tasks
    from engine.train.raw import main as raw_main
    task = getattr(tasks, task_name)
    real_validate = task.validate
    epochs_seen = []

    def diverging(self, model, *args):
        epochs_seen.append(1)
        if len(epochs_seen) == 2:
            _overflowing(model)
        return real_validate(self, model, *args)

    monkeypatch.setattr(task, "validate", diverging)
    log = tmp_path / "log"
    if task_name == "SrgbTask":
        main, argv = train_cli.main, tiny_argv(inputs["train"], inputs["train"], log, epochs=2, patches_per_epoch=2)
    else:
        main, argv = raw_main, ["--builtin", "bikes", "--builtin_size", "40", "56", "--num_resblocks", "2",
                                "--num_channels", "8", "--patch_size", "8", "--batch_size", "2",
                                "--patches_per_epoch", "2", "--epochs", "2", "--device", "cpu", "--num_workers",
                                "0", "--flow", "zero", "--log_dir", str(log)]
    code, _, err = cli(main, argv, capsys)
    assert code == 2 and "training diverged: the validation outputs are NaN" in the_error(err)
    assert f"after epoch 2; the last good checkpoint is '{log}/ckpt_e1.pth'" in err
    assert not (log / "ckpt_e2.pth").exists()
    assert "NaN" not in (log / "metrics.json").read_text()


def test_crvd_test_refuses_nan_outputs_and_writes_no_results(tmp_path, capsys):
    from engine.commands.evaluate_raw import main as crvd_test_main
    ckpt = _overflowing_checkpoint(tmp_path / "raw.pth", "BR_d_c_raw")
    results = tmp_path / "results.json"
    code, _, err = cli(crvd_test_main, ["--model_file", ckpt, "--builtin", "bikes", "--builtin_size", "40", "56",
                                        "--device", "cpu", "--results_json", results], capsys)
    assert code == 2 and "are not finite (NaN or inf): the checkpoint is broken" in the_error(err)
    assert not results.exists()


def test_json_outputs_are_strict():
    from utils.json_text import strict_json
    assert strict_json({"psnr": float("nan"), "rows": [1.5, float("inf")]}, indent=None) == \
        '{"psnr": null, "rows": [1.5, null]}\n'


# ------------------------------------------------------------------ raw levels, previews, devices

@pytest.fixture(scope="module")
def raw_setup(tmp_path_factory):
    import cv2
    import numpy as np

    from engine.inference.loading import save_denoiser
    from models import build_model
    root = tmp_path_factory.mktemp("raw_levels")
    torch.manual_seed(0)
    save_denoiser(root / "raw.pth", build_model("BR_d_c_raw", num_channels=8, num_resblocks=2, flow="zero"), {})
    rng = np.random.default_rng(0)
    for name, dtype, top in (("eight", np.uint8, 255), ("full16", np.uint16, 65535), ("crvd", np.uint16, 4095)):
        (root / name).mkdir()
        for t in range(3):
            frame = rng.integers(0, top + 1, (16, 20)).astype(dtype)
            frame[0, 0] = top  # the brightest pixel reaches the top of the range
            cv2.imwrite(str(root / name / f"{t:05d}.png"), frame)
    return root


def _raw_argv(root, source, out, *extra):
    return [root / source, "-o", out, "--raw", "--model_file", root / "raw.pth", "--device", "cpu", *extra]


@pytest.mark.parametrize("source, extra, words", [
    ("eight", [], "--white 4095 is above what these 8-bit frames hold (255)"),
    ("full16", [], "pixels reach 65535, above the white level 4095"),
    ("crvd", ["--white", "1e30"], "--white 1e+30 is above what these 16-bit frames hold (65535)"),
])
def test_raw_levels_that_cannot_describe_the_frames_are_refused(raw_setup, tmp_path, capsys, source, extra, words):
    out = tmp_path / "out"
    code, _, err = cli(denoise_cli.main, _raw_argv(raw_setup, source, out, *extra), capsys)
    assert code == 2 and words in the_error(err)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_raw_levels_that_fit_are_accepted(raw_setup, tmp_path, capsys):
    code, _, err = cli(denoise_cli.main, _raw_argv(raw_setup, "eight", tmp_path / "out", "--black", "0",
                                                   "--white", "255"), capsys)
    assert code == 0, err
    assert len(list((tmp_path / "out").iterdir())) == 3 and (tmp_path / "out_preview.mp4").is_file()


def test_an_unwritable_preview_or_a_device_output_fails_before_any_work(raw_setup, inputs, tmp_path, capsys,
                                                                      monkeypatch):
    import engine.commands.denoise_raw as denoise_raw_module
    read_anything = []
    monkeypatch.setattr(denoise_raw_module, "read_mosaics", lambda *a: read_anything.append(1))
    code, _, err = cli(denoise_cli.main, _raw_argv(raw_setup, "crvd", tmp_path / "out", "--preview",
                                                   "/proc/preview.mp4"), capsys)
    assert code == 2 and "no file can be created in '/proc'" in the_error(err) and not read_anything
    assert not (tmp_path / "out").exists()
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, "/dev/null"), capsys)
    assert code == 2 and "'/dev/null' is not a regular file or folder" in the_error(err)


def test_a_raw_model_in_the_srgb_paths_says_what_to_do(raw_setup, inputs, tmp_path, capsys):
    argv = [inputs["train"] / "seq0", "-o", tmp_path / "o.mp4", "--model_file", raw_setup / "raw.pth",
            "--device", "cpu", "--sigma", "30"]
    for extra in ([], ["--prior_scale", "1"]):
        code, _, err = cli(denoise_cli.main, argv + extra, capsys)
        assert code == 2 and "is a raw model (4 packed Bayer channels): pass --raw" in the_error(err)
    code, _, err = cli(evaluate_cli.main, ["--model_file", raw_setup / "raw.pth", "--test_path", inputs["train"],
                                           "--device", "cpu", "--no_save"], capsys)
    assert code == 2 and "is a raw model (4 packed Bayer channels): evaluate it with CRVD_test.py" in the_error(err)


# ------------------------------------------------------------------ frame folders, disks, checkpoints

def test_a_killed_folder_write_leaves_no_folder_that_looks_finished(inputs, tmp_path, capsys, monkeypatch):
    import datasets.video_io as video_io
    real_write_png = video_io.write_png
    written = []

    def killed_after_two(path, frame):
        if len(written) == 2:
            raise KeyboardInterrupt  # what a kill mid-write looks like to the frames written so far
        written.append(path)
        real_write_png(path, frame)

    monkeypatch.setattr(video_io, "write_png", killed_after_two)
    out = tmp_path / "frames"
    with pytest.raises(KeyboardInterrupt):
        denoise_cli.main([str(a) for a in _denoise_argv(inputs, out)])
    assert not out.exists()
    # A SIGKILL leaves its partial folder behind: the next run removes it and writes every frame.
    (tmp_path / ".frames.0123abcd.partial").mkdir()
    monkeypatch.setattr(video_io, "write_png", real_write_png)
    assert cli(denoise_cli.main, _denoise_argv(inputs, out), capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"] and len(list(out.iterdir())) == 6


def test_a_full_disk_while_opening_a_video_reads_as_a_full_disk(inputs, tmp_path, capsys, monkeypatch):
    import builtins

    import cv2

    import datasets.video_io as video_io

    class Unopenable:  # what OpenCV's writer does when it cannot create its file
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", Unopenable)
    monkeypatch.setattr(video_io, "open", lambda path, mode: builtins.open("/dev/full", mode), raising=False)
    out = tmp_path / "o.mp4"
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, out), capsys)
    assert code == 2 and f"cannot write video '{out}': No space left on device" in the_error(err)
    assert "no encoder" not in err and not out.exists()


def test_a_checkpoint_with_a_flipped_bit_is_refused_not_resumed(inputs, tmp_path, capsys):
    log = tmp_path / "log"
    assert cli(train_cli.main, tiny_argv(inputs["train"], None, log, patches_per_epoch=2), capsys)[0] == 0
    data = bytearray((log / "ckpt_e1.pth").read_bytes())
    data[len(data) // 2] ^= 0x04  # inside a tensor record
    (log / "ckpt_e1.pth").write_bytes(bytes(data))
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2), capsys)
    assert code == 2 and "is damaged: its record" in the_error(err) and "fails its checksum" in err
    assert not (log / "ckpt_e2.pth").exists()


def test_a_new_lr_on_resume_is_refused_not_ignored(inputs, tmp_path, capsys):
    log = tmp_path / "log"
    assert cli(train_cli.main, tiny_argv(inputs["train"], None, log, patches_per_epoch=2, lr="1e-3"), capsys)[0] == 0
    code, _, err = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2,
                                                 lr="5e-4"), capsys)
    assert code == 2 and "--lr: the run in" in the_error(err) and "was trained with lr=0.001, not 0.0005" in err
    assert not (log / "ckpt_e2.pth").exists()
    code, _, _ = cli(train_cli.main, tiny_argv(inputs["train"], None, log, epochs=2, patches_per_epoch=2,
                                               lr="1e-3"), capsys)
    assert code == 0 and load_checkpoint(log / "ckpt_e2.pth")["args"]["lr"] == 1e-3


def test_prior_scale_values_out_of_range_and_failed_fits_are_named(inputs, tmp_path, capsys, monkeypatch):
    code, _, err = cli(denoise_cli.main, _denoise_argv(inputs, tmp_path / "o.mp4", "--prior_scale", "1e30"), capsys)
    assert code == 2 and "--prior_scale 1e30: a scale must lie in [0.05, 4]" in the_error(err)
    from engine.inference import prior_scale
    # A likelihood that is NaN whatever the matrix (as for an output that overflows in places).
    monkeypatch.setattr(prior_scale, "loglike_loss", lambda out, noisy, sigma, scale: scale.sum() * float("nan"))
    code, out, err = cli(denoise_cli.main, _denoise_argv(inputs, tmp_path / "o.mp4"), capsys)
    assert code == 0 and "fitted to the input" not in out
    assert "cannot fit the prior's colour matrix" in err and "using the model's own posterior" in err


def test_srgb_test_writes_no_png_from_nan_output(inputs, tmp_path, capsys):
    ckpt = _overflowing_checkpoint(tmp_path / "overflowing.pth", "bdc_2_unify")
    out = tmp_path / "pngs"
    code, _, err = cli(evaluate_cli.main, ["--model_file", ckpt, "--test_path", inputs["train"], *TINY,
                                           "--output_dir", out], capsys)
    assert code == 2 and "denoised frame 0 is not finite (NaN or inf)" in the_error(err)
    assert not list(out.rglob("*.png"))
