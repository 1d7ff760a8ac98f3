"""Ablation switches: parsed by training, recorded in the checkpoint, rebuilt by the evaluation."""
from __future__ import annotations

import pytest
import torch

from engine.denoise_video import build_arg_parser as denoise_parser
from engine.denoiser import load_denoiser, save_denoiser, variant_options
from engine.evaluate import build_arg_parser as evaluate_parser
from engine.train import build_arg_parser, train
from models import build_model
from models.stbn import PixelwiseDirectionFusion
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from tests.models.test_stbn import VARIANTS
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
RELEASED = {"align": "nearest", "use_bsa": True, "use_srfe": True}
# Paper Table 3 (Set8, sigma 30) rows -> training switches.
TABLE3_ROWS = {"propagation only": ["--no_bsa", "--no_srfe"], "+ BSA": ["--no_srfe"], "+ SRFE": [],
               "+ distillation": ["--distill"]}


def test_variant_options_from_recorded_arguments():
    assert variant_options(None) == RELEASED  # the authors' file records nothing
    assert variant_options({"model": "bdc_2_unify"}) == RELEASED
    saved = {"align": "softsplat", "no_bsa": True, "no_srfe": False}
    assert variant_options(saved) == {"align": "softsplat", "use_bsa": False, "use_srfe": True}
    assert variant_options(saved, align="bilinear")["align"] == "bilinear"
    with pytest.raises(UserError, match="--align: unknown alignment 'cubic'"):
        variant_options({"align": "cubic"})


@pytest.mark.parametrize("row", list(TABLE3_ROWS))
def test_table3_rows_build_blind_spot_tested_variants(row):
    args = build_arg_parser().parse_args(["--builtin", "bikes", *TABLE3_ROWS[row]])
    options = variant_options(vars(args))
    assert options["align"] == "nearest"
    tested = [{**RELEASED, **v} for name, v in VARIANTS.items() if "noise_map" not in v]
    assert options in tested
    assert args.distill is (True if row == "+ distillation" else None)


def test_evaluation_scripts_default_to_the_recorded_warp():
    assert evaluate_parser().parse_args(["--model_file", "x", "--builtin", "bikes"]).align is None
    assert denoise_parser().parse_args(["in", "-o", "out", "--sigma", "30", "--model_file", "x",
                                        "--align", "bilinear"]).align == "bilinear"


def test_trained_variant_is_evaluated_as_trained(tmp_path):
    train_dir = make_sequence_folders(tmp_path / "train", 1, 6)
    argv = tiny_argv(train_dir, None, tmp_path / "log", patches_per_epoch=4) + [
        "--no_bsa", "--no_srfe", "--align", "bilinear"]
    trained = train(build_arg_parser().parse_args(argv))["model"].eval()
    ckpt = tmp_path / "log" / "ckpt_e1.pth"
    model, saved = load_denoiser(ckpt, torch.device("cpu"), "bdc_2_unify", 2, 8)
    assert saved["args"]["no_bsa"] and saved["args"]["no_srfe"] and saved["args"]["align"] == "bilinear"
    assert (model.align_mode, model.use_bsa, model.use_srfe) == ("bilinear", False, False)
    assert not hasattr(model, "concat") and isinstance(model.d, PixelwiseDirectionFusion)
    seqn = torch.rand(1, 3, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    nmap = torch.full_like(seqn, 30 / 255)
    with torch.no_grad():
        assert torch.equal(model(seqn, nmap)[0], trained(seqn, nmap)[0])
        nearest, _ = load_denoiser(ckpt, torch.device("cpu"), "bdc_2_unify", 2, 8, align="nearest")
        assert nearest.align_mode == "nearest"
    # A resumed run must keep the variant.
    with pytest.raises(UserError, match="--no_srfe: the run in .* was trained with no_srfe=True, not False"):
        train(build_arg_parser().parse_args(argv[:-4] + ["--no_bsa", "--align", "bilinear", "--epochs", "2"]))


def test_saved_finetuned_variant_reloads_as_the_same_variant(tmp_path):
    model = build_model("bdc_2_unify", num_resblocks=2, num_channels=8, align="softsplat", use_bsa=False)
    model.set_flow_source("zero")
    save_denoiser(tmp_path / "tuned.pth", model, {"model": "bdc_2_unify"})
    loaded, _ = load_denoiser(tmp_path / "tuned.pth", torch.device("cpu"), "bdc_2_unify", 2, 8)
    assert (loaded.align_mode, loaded.use_bsa, loaded.use_srfe) == ("softsplat", False, True)
