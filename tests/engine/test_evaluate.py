"""The official evaluation protocol end to end on a tiny Set8-style folder, against a by-hand run."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from engine.evaluate import build_arg_parser, evaluate
from models import build_model
from tests.engine.synthetic import REPO_ROOT, make_sequence_folders
from utils.checkpoint import add_module_prefix, save_checkpoint
from utils.errors import UserError
from utils.gaussian import posterior_mean

TINY = ["--num_channels", "8", "--num_resblocks", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 4-frame 32x48 sequences and a tiny model with fixed random weights, saved both ways."""
    root = tmp_path_factory.mktemp("eval")
    data = make_sequence_folders(root / "Set8", num_sequences=2, num_frames=4, height=32, width=48)
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2)
    state = model.state_dict()
    prefixed = root / "prefixed.pth"
    bare = root / "bare.pth"
    save_checkpoint(prefixed, {"args": {"flow_source": "dis"}, "state_dict": add_module_prefix(state)})
    save_checkpoint(bare, {"args": {"flow_source": "dis"}, "state_dict": state})
    model.set_flow_source("dis")
    return {"root": root, "data": data, "model": model.eval(), "prefixed": prefixed, "bare": bare}


def _by_hand(model, folder, sigma):
    """The authors' steps, written out: cv2 read, seed 0, CPU noise, model, posterior, clamp, skimage."""
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))]
    # Contiguous (T,3,H,W) as FastDVDnet's reader stacks it: normal_ fills in memory order.
    seq = torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2)) / 255.).float()
    torch.manual_seed(0)
    seqn = seq + torch.empty_like(seq).normal_(mean=0, std=sigma / 255.)
    noise_std = torch.FloatTensor([sigma / 255.])
    with torch.no_grad():
        out, _ = model(seqn[None], noise_std.expand(seqn.shape)[None])
        den = posterior_mean(out, seqn[None], noise_std.item())[0].clamp(0, 1)
    psnrs = [peak_signal_noise_ratio(c.numpy().clip(0, 1), d.numpy(), data_range=1.) for d, c in zip(den, seq)]
    ssims = [structural_similarity(c.permute(1, 2, 0).double().numpy(), d.permute(1, 2, 0).double().numpy(),
                                   channel_axis=2, win_size=11, gaussian_weights=True, sigma=1.5,
                                   K1=0.01, K2=0.03, data_range=1) for d, c in zip(den, seq)]
    return sum(psnrs) / len(psnrs), sum(ssims) / len(ssims), den


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
        assert set(entry) == {"psnr", "ssim", "sequences"} and list(entry["sequences"]) == ["seq0", "seq1"]
        expected = []
        for name, seq in entry["sequences"].items():
            assert set(seq) == {"psnr", "ssim", "frames", "seconds"} and seq["frames"] == 4 and seq["seconds"] > 0
            psnr, ssim, den = _by_hand(setup["model"], setup["data"] / name, sigma)
            assert seq["psnr"] == pytest.approx(psnr, abs=1e-9) and seq["ssim"] == pytest.approx(ssim, abs=1e-9)
            expected.append((psnr, ssim))
            # PNGs per sigma (several sigmas), rounded as torchvision's save_image.
            png = cv2.cvtColor(cv2.imread(str(out_dir / f"sigma{key}" / name / "00003.png")), cv2.COLOR_BGR2RGB)
            assert np.array_equal(png, (den[3] * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())
        assert entry["psnr"] == pytest.approx(np.mean([e[0] for e in expected]), abs=1e-9)
        assert entry["ssim"] == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-9)
    # Lower noise must give the better score: a check that sigma really reaches noise and posterior.
    assert results["12.5"]["psnr"] > results["30"]["psnr"] + 1
    printed = capsys.readouterr().out
    assert f"sigma 30, PSNR: {results['30']['psnr']:6.4f}, SSIM: {results['30']['ssim']:6.4f}" in printed
    assert "Set8/seq0" in printed and "sigma 12.5, PSNR" in printed


def test_bare_checkpoint_and_bounded_memory_give_the_same_numbers(setup):
    full = evaluate(_args(setup, "--memory", "full", "--no_save"))
    bare = build_arg_parser().parse_args(["--model_file", str(setup["bare"]), "--test_path", str(setup["data"]),
                                          *TINY, "--memory", "bounded", "--output_dir",
                                          str(setup["root"] / "single")])
    bounded = evaluate(bare)
    for name in ("seq0", "seq1"):
        assert bounded["30"]["sequences"][name]["psnr"] == pytest.approx(full["30"]["sequences"][name]["psnr"], abs=1e-4)
        assert bounded["30"]["sequences"][name]["ssim"] == pytest.approx(full["30"]["sequences"][name]["ssim"], abs=1e-5)
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


def test_mismatched_checkpoint_exits_2_naming_num_channels(setup):
    result = subprocess.run([sys.executable, "sRGB_test.py", "--model_file", str(setup["prefixed"]),
                             "--test_path", str(setup["data"]), "--num_resblocks", "2", "--device", "cpu"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--num_channels 8" in error[0]


def test_png_write_failure_keeps_earlier_file(tmp_path, monkeypatch):
    import errno

    import engine.evaluate as evaluation

    target = tmp_path / "00000.png"
    first = np.full((4, 5, 3), 7, dtype=np.uint8)
    evaluation.write_png_atomic(target, first)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluation.os, "replace", disk_full)
    with pytest.raises(UserError, match="No space left on device"):
        evaluation.write_png_atomic(target, np.zeros((4, 5, 3), dtype=np.uint8))
    assert np.array_equal(cv2.imread(str(target)), first) and [p.name for p in tmp_path.iterdir()] == ["00000.png"]
