"""Ablation switches: parsed by training into a StbnConfig, stored in the checkpoint, rebuilt by
every loader (for every variant of tests/models/test_stbn.py `VARIANTS`)."""
from __future__ import annotations

import pytest
import torch

from engine.commands.denoise_video import build_arg_parser as denoise_parser
from engine.commands.evaluate import build_arg_parser as evaluate_parser
from engine.inference.loading import checkpoint_config, load_denoiser, save_denoiser
from engine.train.args import model_config_from_args
from engine.train.loop import build_arg_parser, train, validate_args
from models import StbnConfig, build_model
from models.fusion_pixelwise import PixelwiseDirectionFusion
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from tests.models.test_stbn import VARIANTS
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
# Paper Table 3 (Set8, sigma 30) rows -> training switches.
TABLE3_ROWS = {"propagation only": ["--no_bsa", "--no_srfe"], "+ BSA": ["--no_srfe"], "+ SRFE": [],
               "+ distillation": ["--distill"]}


def test_checkpoint_config_for_each_kind_of_file():
    default = StbnConfig(num_channels=8, num_resblocks=2)
    assert checkpoint_config({"state_dict": {}}, default) == default  # the authors' file records none
    stored = default.replace(direction_fusion="dilated", flow="dis")
    assert checkpoint_config({"config": stored.to_dict(), "state_dict": {}}, default) == stored
    # Our checkpoints from before configs were stored: the variant their arguments record.
    legacy = {"args": {"flow_source": "dis", "align": "softsplat", "no_bsa": True, "no_srfe": True}}
    assert checkpoint_config(legacy, default) == default.replace(align="softsplat", bsa=False,
                                                                 direction_fusion="pixelwise")
    with pytest.raises(UserError, match="configuration is not readable"):
        checkpoint_config({"config": {"num_channels": 8, "colour": 1}}, default)


@pytest.mark.parametrize("row", list(TABLE3_ROWS))
def test_table3_rows_build_blind_spot_tested_variants(row):
    args = build_arg_parser().parse_args(["--builtin", "bikes", *TABLE3_ROWS[row]])
    validate_args(args)
    config = model_config_from_args(args, "pwc")
    tested = [StbnConfig(**v) for v in VARIANTS.values() if "noise_map" not in v]
    assert config in tested
    assert args.distill is (row == "+ distillation")


def test_direction_fusion_option_and_its_conflict_with_no_srfe():
    args = build_arg_parser().parse_args(["--builtin", "bikes", "--direction_fusion", "dilated"])
    validate_args(args)
    assert model_config_from_args(args, "dis").direction_fusion == "dilated"
    args = build_arg_parser().parse_args(["--builtin", "bikes", "--direction_fusion", "dilated", "--no_srfe"])
    with pytest.raises(UserError, match="--no_srfe means --direction_fusion pixelwise"):
        validate_args(args)


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
    # The CLI's model options describe files without a config; this one stores its own.
    model, saved = load_denoiser(ckpt, torch.device("cpu"), "bdc_2_unify", 5, 64)
    assert saved["config"] == trained.config.to_dict()
    assert (model.config.align, model.config.bsa, model.config.direction_fusion) == ("bilinear", False, "pixelwise")
    assert not hasattr(model, "concat") and isinstance(model.d, PixelwiseDirectionFusion)
    seqn = torch.rand(1, 3, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    nmap = torch.full_like(seqn, 30 / 255)
    with torch.no_grad():
        assert torch.equal(model(seqn, nmap)[0], trained(seqn, nmap)[0])
        nearest, _ = load_denoiser(ckpt, torch.device("cpu"), align="nearest")
        assert nearest.config.align == "nearest"
    # A resumed run must keep the variant.
    with pytest.raises(UserError, match="--direction_fusion: the run in .* was trained with "
                                        "direction_fusion=pixelwise, not srfe"):
        train(build_arg_parser().parse_args(argv[:-4] + ["--no_bsa", "--align", "bilinear", "--epochs", "2"]))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_round_trips_through_a_checkpoint(tmp_path, variant):
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_resblocks=2, num_channels=8, flow="zero", **VARIANTS[variant]).eval()
    save_denoiser(tmp_path / "tuned.pth", model, {"model": "bdc_2_unify"})
    loaded, _ = load_denoiser(tmp_path / "tuned.pth", torch.device("cpu"))
    assert loaded.config == model.config
    seqn = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(seqn, torch.full_like(seqn, 0.1))[0], model(seqn, torch.full_like(seqn, 0.1))[0])
