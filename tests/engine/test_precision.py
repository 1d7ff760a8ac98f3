"""--precision: bf16 runs where it is native and checked; float32 everywhere else, said once."""
import pytest
import torch

import engine.inference.precision as precision_module
from engine.inference.precision import AUTO_TOLERANCE_GREY, bf16_difference_grey, choose_precision
from engine.inference.sequence import denoise_sequence
from models import build_model
from tests.engine.test_inference import SIGMA, _moving_clip
from utils.errors import UserError


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model("bdc_2_unify", num_channels=8, num_resblocks=2, flow="dis").eval()


def test_fp32_and_bf16_are_taken_as_asked(tiny_model, monkeypatch):
    clip = _moving_clip(3)
    assert choose_precision("fp32", tiny_model, clip, SIGMA) == (None, "precision float32")
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: False)
    dtype, note = choose_precision("bf16", tiny_model, clip, SIGMA)
    assert dtype == torch.bfloat16 and "not native on this hardware: emulated" in note
    with pytest.raises(UserError, match="--precision: unknown precision 'fp16'"):
        choose_precision("fp16", tiny_model, clip, SIGMA)


def test_auto_is_float32_without_native_bf16_and_runs_no_check(tiny_model, monkeypatch):
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: False)
    monkeypatch.setattr(precision_module, "bf16_difference_grey", lambda *a: pytest.fail("no check without bf16"))
    assert choose_precision("auto", tiny_model, _moving_clip(3), SIGMA) == (
        None, "precision float32: bf16 is not native on this CPU (no avx512_bf16 or AMX)")


def test_auto_takes_bf16_where_native_only_if_the_check_passes(tiny_model, monkeypatch):
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: True)
    clip = _moving_clip(3)
    difference = bf16_difference_grey(tiny_model, clip, SIGMA)
    assert 0 < difference < AUTO_TOLERANCE_GREY  # bf16 changes the output, a little
    dtype, note = choose_precision("auto", tiny_model, clip, SIGMA)
    assert dtype == torch.bfloat16 and f"{difference:.3f} grey levels" in note
    monkeypatch.setattr(precision_module, "AUTO_TOLERANCE_GREY", difference / 2)
    dtype, note = choose_precision("auto", tiny_model, clip, SIGMA)
    assert dtype is None and "bf16 changes this model's output by" in note


@pytest.mark.parametrize("memory", ["full", "bounded"])
def test_bf16_output_is_float32_within_a_grey_level_on_both_memory_paths(tiny_model, memory):
    clip = _moving_clip(4)
    reference = denoise_sequence(tiny_model, clip, SIGMA, memory="full")
    reduced = denoise_sequence(tiny_model, clip, SIGMA, memory=memory, precision=torch.bfloat16,
                               state_budget=2 * 4 * 8 * 32 * 48)
    assert reduced.dtype == torch.float32
    difference = (reduced - reference).abs() * 255
    assert 0 < difference.mean() < AUTO_TOLERANCE_GREY and difference.max() < 4
    assert torch.equal(denoise_sequence(tiny_model, clip, SIGMA, memory=memory, state_budget=2 * 4 * 8 * 32 * 48,
                                        precision=None), denoise_sequence(tiny_model, clip, SIGMA, memory=memory,
                                                                          state_budget=2 * 4 * 8 * 32 * 48))


def test_the_commands_say_which_precision_they_used(inputs, tmp_path, capsys, monkeypatch):
    import json

    import engine.commands.denoise_video as denoise_cli
    import engine.commands.evaluate as evaluate_cli
    from tests.test_robustness import TINY, cli
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: False)
    argv = [inputs["train"] / "seq0", "-o", tmp_path / "o.mp4", "--model_file", inputs["ckpt"], *TINY, "--sigma", "30"]
    code, out, _ = cli(denoise_cli.main, argv, capsys)
    assert code == 0 and out.count("precision float32: bf16 is not native on this CPU") == 1
    results = tmp_path / "r.json"
    code, out, _ = cli(evaluate_cli.main, ["--model_file", inputs["ckpt"], "--test_path", inputs["train"], *TINY,
                                           "--no_save", "--results_json", results], capsys)
    assert code == 0 and "precision" not in out  # the protocol's float32, as before
    assert json.loads(results.read_text())["30"]["precision"] == "fp32"
