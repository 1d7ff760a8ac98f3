"""The official evaluation protocol end to end on a tiny Set8-style folder, against a by-hand run."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from engine.commands.evaluate import build_arg_parser, evaluate
from engine.inference.loading import add_module_prefix
from models import build_model
from tests import official_protocol as official
from tests.engine.synthetic import REPO_ROOT, SUBPROCESS_ENV, make_sequence_folders
from utils.checkpoint import save_checkpoint
from utils.errors import UserError
from utils.gaussian import posterior_mean

TINY = ["--num_channels", "8", "--num_resblocks", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 4-frame 32x48 sequences and a tiny model with fixed random weights, saved both ways."""
    root = tmp_path_factory.mktemp("eval")
    data = make_sequence_folders(root / "Set8", num_sequences=2, num_frames=4, height=32, width=48)
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="dis")
    state = model.state_dict()
    prefixed = root / "prefixed.pth"
    bare = root / "bare.pth"
    save_checkpoint(prefixed, {"args": {"flow_source": "dis"}, "state_dict": add_module_prefix(state)})
    save_checkpoint(bare, {"args": {"flow_source": "dis"}, "state_dict": state})
    return {"root": root, "data": data, "model": model.eval(), "prefixed": prefixed, "bare": bare}


def _by_hand(model, folder, sigma):
    """The authors' steps (tests/official_protocol.py) with our posterior: psnr, ssim, denoised."""
    run = official.run_sequence(model, str(folder), sigma, posterior=posterior_mean)
    return run["psnr"], run["ssim"], run["den"]


def _args(setup, *extra):
    return build_arg_parser().parse_args(["--model_file", str(setup["prefixed"]), "--test_path",
                                          str(setup["data"]), *TINY, *extra])


def test_protocol_numbers_json_and_pngs(setup, capsys):
    out_dir, json_path = setup["root"] / "out", setup["root"] / "res" / "results.json"
    results = evaluate(_args(setup, "--noise_sigmas", "30", "12.5", "--memory", "full",
                             "--output_dir", str(out_dir), "--results_json", str(json_path)))
    assert json.loads(json_path.read_text()) == results
    assert list(results) == ["30", "12.5"]
    for key, sigma in (("30", 30.0), ("12.5", 12.5)):
        entry = results[key]
        assert set(entry) == {"psnr", "ssim", "precision", "sequences"} and list(entry["sequences"]) == ["seq0", "seq1"]
        assert entry["precision"] == "fp32"  # the protocol's default
        expected = []
        for name, seq in entry["sequences"].items():
            assert set(seq) == {"psnr", "ssim", "frames", "seconds"} and seq["frames"] == 4 and seq["seconds"] > 0
            psnr, ssim, den = _by_hand(setup["model"], setup["data"] / name, sigma)
            assert seq["psnr"] == psnr and seq["ssim"] == ssim  # bit for bit
            expected.append((psnr, ssim))
            # PNGs per sigma (several sigmas), rounded as torchvision's save_image.
            png = cv2.cvtColor(cv2.imread(str(out_dir / f"sigma{key}" / name / "00003.png")), cv2.COLOR_BGR2RGB)
            assert np.array_equal(png, (den[3] * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())
        assert entry["psnr"] == sum(e[0] for e in expected) / len(expected)
        assert entry["ssim"] == sum(e[1] for e in expected) / len(expected)
    # Lower noise must give the better score: a check that sigma really reaches noise and posterior.
    assert results["12.5"]["psnr"] > results["30"]["psnr"] + 1
    printed = capsys.readouterr().out
    assert f"sigma 30, PSNR: {results['30']['psnr']:6.4f}, SSIM: {results['30']['ssim']:6.4f}" in printed
    assert "Set8/seq0" in printed and "sigma 12.5, PSNR" in printed


def test_srgb_test_script_gives_the_authors_numbers_on_odd_sizes_and_one_frame(setup, tmp_path):
    """sRGB_test.py (a subprocess) on odd-sized PNG sequences, one of a single frame, against the
    authors' procedure: bit for bit with our posterior; with their float32-inverse posterior the
    numbers agree to the printed 4 decimals."""
    root = tmp_path / "odd"
    make_sequence_folders(root, num_sequences=1, num_frames=3, height=31, width=45, seed=3)
    single = make_sequence_folders(tmp_path / "one", num_sequences=1, num_frames=1, height=27, width=33, seed=4)
    (single / "seq0").rename(root / "zz_single")
    result_file = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "sRGB_test.py", "--model_file", str(setup["prefixed"]), "--test_path",
                          str(root), *TINY, "--noise_sigmas", "25", "--no_save", "--results_json", str(result_file)],
                         cwd=REPO_ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    sequences = json.loads(result_file.read_text())["25"]["sequences"]
    assert list(sequences) == ["seq0", "zz_single"] and sequences["zz_single"]["frames"] == 1
    for name, entry in sequences.items():
        ours = official.run_sequence(setup["model"], str(root / name), 25, posterior=posterior_mean)
        assert (entry["psnr"], entry["ssim"]) == (ours["psnr"], ours["ssim"])
        theirs = official.run_sequence(setup["model"], str(root / name), 25)
        assert abs(entry["psnr"] - theirs["psnr"]) < 5e-5 and abs(entry["ssim"] - theirs["ssim"]) < 5e-6


def test_bare_checkpoint_and_bounded_memory_give_the_same_numbers(setup):
    full = evaluate(_args(setup, "--memory", "full", "--no_save"))
    bare = build_arg_parser().parse_args(["--model_file", str(setup["bare"]), "--test_path", str(setup["data"]),
                                          *TINY, "--memory", "bounded", "--output_dir",
                                          str(setup["root"] / "single")])
    bounded = evaluate(bare)
    for name in ("seq0", "seq1"):
        ours, one_pass = bounded["30"]["sequences"][name], full["30"]["sequences"][name]
        assert ours["psnr"] == pytest.approx(one_pass["psnr"], abs=1e-4)
        assert ours["ssim"] == pytest.approx(one_pass["ssim"], abs=1e-5)
    # One sigma: frames go straight to output_dir/<seq>/.
    assert sorted(p.name for p in (setup["root"] / "single" / "seq1").iterdir()) == [f"{t:05d}.png" for t in range(4)]


def test_unwritable_outputs_are_user_errors(setup):
    blocker = setup["root"] / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create output folder"):
        evaluate(_args(setup, "--output_dir", str(blocker / "sub"), "--max_num_fr_per_seq", "1"))
    with pytest.raises(UserError, match="--results_json"):
        evaluate(_args(setup, "--results_json", str(setup["root"]), "--no_save"))
    with pytest.raises(UserError, match="--noise_sigmas"):
        evaluate(_args(setup, "--noise_sigmas", "300"))


@pytest.mark.slow
def test_mismatched_checkpoint_exits_2_naming_num_channels(setup):
    result = subprocess.run([sys.executable, "sRGB_test.py", "--model_file", str(setup["prefixed"]),
                             "--test_path", str(setup["data"]), "--num_resblocks", "2", "--device", "cpu"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--num_channels 8" in error[0]


def test_png_write_failure_keeps_earlier_file(tmp_path, monkeypatch):
    """A full disk while a PNG is written (the real ENOSPC of /dev/full) keeps the earlier file."""
    import utils.atomic as atomic
    from datasets.video_io import write_png

    target = tmp_path / "00000.png"
    first = np.full((4, 5, 3), 7, dtype=np.uint8)
    write_png(target, first)
    real_path = atomic.Path

    class FullDisk(type(real_path())):
        def write_bytes(self, data):
            with open("/dev/full", "wb") as full:
                return full.write(data) and full.flush()

    monkeypatch.setattr(atomic, "Path", FullDisk)
    with pytest.raises(UserError, match="No space left on device"):
        write_png(target, np.zeros((4, 5, 3), dtype=np.uint8))
    assert np.array_equal(cv2.imread(str(target)), first) and [p.name for p in tmp_path.iterdir()] == ["00000.png"]


@pytest.mark.slow
def test_stbn_s_finetuning_improves_psnr_and_starts_each_sequence_from_the_checkpoint(setup, monkeypatch):
    """--finetune 20 (STBN_s) trains on each sequence's protocol noisy frames (float, unclipped),
    beats --finetune 0 on both sequences, and restores the checkpoint before the next sequence."""
    import engine.commands.evaluate as evaluation

    seen = []
    real = evaluation.finetune_on_video

    def recording(model, frames, sigma, **options):
        seen.append((frames.dtype, float(frames.min()), {k: v.clone() for k, v in model.state_dict().items()}))
        return real(model, frames, sigma, **options)

    monkeypatch.setattr(evaluation, "finetune_on_video", recording)
    plain = evaluate(_args(setup, "--no_save", "--memory", "full"))
    tuned = evaluate(_args(setup, "--no_save", "--memory", "full", "--finetune", "20", "--finetune_lr", "1e-3"))
    assert tuned["30"]["finetune"]["iterations"] == 20 and tuned["30"]["finetune"]["lr"] == 1e-3
    for name in ("seq0", "seq1"):
        assert tuned["30"]["sequences"][name]["psnr"] > plain["30"]["sequences"][name]["psnr"] + 0.1
    assert len(seen) == 2 and all(dtype == np.float32 and low < 0 for dtype, low, _ in seen)  # unclipped
    first, second = seen[0][2], seen[1][2]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(torch.equal(first[k], v) for k, v in setup["model"].state_dict().items())


def test_sigma_estimate_reports_the_estimate_and_the_numbers_it_gives(setup, capsys):
    from datasets.builtin import builtin_split
    from datasets.eval_sequences import to_unit_float
    from engine.inference.sequence import denoise_sequence
    from utils.metrics import sequence_psnr
    from utils.noise import add_test_noise
    results = evaluate(build_arg_parser().parse_args(
        ["--model_file", str(setup["prefixed"]), "--builtin", "carphone", "--max_num_fr_per_seq", "6",
         "--noise_sigmas", "30", "--no_save", "--sigma_estimate", *TINY]))
    entry = results["30"]
    seq = entry["sequences"]["carphone"]
    assert abs(seq["sigma_estimated"] / 30 - 1) < 0.10
    assert entry["sigma_estimated"] == seq["sigma_estimated"]
    # The second pass is the protocol's noisy clip denoised with the estimate, scored as the first.
    clean = to_unit_float(builtin_split("carphone")[1][:6])
    noisy = add_test_noise(clean, 30 / 255)
    by_hand = sequence_psnr(denoise_sequence(setup["model"], noisy, seq["sigma_estimated"] / 255), clean)
    assert seq["psnr_estimated_sigma"] == pytest.approx(by_hand, abs=1e-4)
    assert seq["psnr_estimated_sigma"] != seq["psnr"]
    assert "estimated sigma" in capsys.readouterr().out


@pytest.mark.slow
def test_prior_scale_fit_reports_the_scale_and_the_numbers_it_gives(setup, capsys):
    from datasets.builtin import builtin_split
    from datasets.eval_sequences import to_unit_float
    from engine.inference.prior_scale import fit_prior_scale
    from engine.inference.sequence import denoise_sequence
    from utils.metrics import sequence_psnr
    from utils.noise import add_test_noise
    results = evaluate(build_arg_parser().parse_args(
        ["--model_file", str(setup["prefixed"]), "--builtin", "carphone", "--max_num_fr_per_seq", "6",
         "--noise_sigmas", "30", "--no_save", "--prior_scale_fit", *TINY]))
    seq = results["30"]["sequences"]["carphone"]
    clean = to_unit_float(builtin_split("carphone")[1][:6])
    noisy = add_test_noise(clean, 30 / 255)
    scale = fit_prior_scale(setup["model"], noisy, 30 / 255)
    assert np.allclose(seq["prior_scale_fitted"], scale.numpy(), atol=1e-6)
    assert not torch.allclose(scale, torch.eye(3, dtype=torch.float64), atol=1e-3)
    assert np.allclose(results["30"]["prior_scale_fitted"], scale.numpy(), atol=1e-6)  # one sequence: its own
    by_hand = sequence_psnr(denoise_sequence(setup["model"], noisy, 30 / 255, prior_scale=scale), clean)
    assert seq["psnr_fitted_prior"] == pytest.approx(by_hand, abs=1e-4)
    official = sequence_psnr(denoise_sequence(setup["model"], noisy, 30 / 255), clean)
    assert seq["psnr"] == pytest.approx(official, abs=1e-4)
    assert "fitted prior scale" in capsys.readouterr().out
