"""One meaning for a checkpoint in evaluation, denoising, fine-tuning and training.

An authors'-format file (a 'state_dict' without our recorded flow source) aligns with its own
PWC-Net everywhere; a bare state dict never aligns with its PWC-Net silently.
"""
from __future__ import annotations

import pytest
import torch

from engine.inference.loading import (
    add_module_prefix,
    choose_flow_source,
    load_denoiser,
    load_pwc_weights,
    pwc_weights_trained,
)
from engine.train.loop import build_arg_parser, train
from models import build_model
from models.pwc import PWCNet
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError

# What the authors' training writes into a checkpoint's 'args' (their argparse): no flow source.
AUTHORS_ARGS = {"model": "bdc_2_unify", "num_resblocks": 2, "train_length": 3, "batch_size": 2, "epochs": 1,
                "lr": 3e-4, "noise_ival": [30 / 255.], "val_noiseL": 30 / 255., "patch_size": 32}


def _tiny_model():
    torch.manual_seed(0)
    return build_model("bdc_2_unify", num_channels=8, num_resblocks=2)


def test_flow_choice_for_each_kind_of_checkpoint():
    state = {"w": torch.zeros(1)}
    authors = {"args": dict(AUTHORS_ARGS), "state_dict": state}
    ours_dis = {"args": {"flow_source": "dis"}, "state_dict": {**state, "pwcnet.conv.weight": torch.zeros(1)}}
    exported = {"args": {"flow_source": "dis"}, "state_dict": state}  # saved without its unused PWC-Net
    distilled = {"args": {"flow_source": "dis", "distill": True}, "state_dict": state}
    assert [pwc_weights_trained(c) for c in (authors, ours_dis, distilled, state)] == [True, False, True, None]
    assert choose_flow_source("auto", authors, False) == ("pwc", None)
    assert choose_flow_source("pwc", authors, False) == ("pwc", None)
    assert choose_flow_source("auto", distilled, False) == ("pwc", None)
    source, note = choose_flow_source("auto", ours_dis, False)
    assert source == "dis" and "trained with dis flow" in note
    assert choose_flow_source("auto", exported, False) == ("dis", None)
    assert choose_flow_source("auto", ours_dis, True) == ("pwc", None)
    with pytest.raises(UserError, match="holds no trained PWC-Net weights"):
        choose_flow_source("pwc", ours_dis, False)
    source, note = choose_flow_source("auto", state, False)
    assert source == "dis" and "bare state dict" in note and "--flow pwc" in note
    source, note = choose_flow_source("pwc", state, False)
    assert source == "pwc" and "bare state dict" in note


def test_loaders_say_which_flow_a_bare_state_dict_gets(tmp_path, capsys):
    model = _tiny_model()
    authors, bare = tmp_path / "authors.pth", tmp_path / "bare.pth"
    save_checkpoint(authors, {"args": dict(AUTHORS_ARGS), "state_dict": add_module_prefix(model.state_dict())})
    save_checkpoint(bare, model.state_dict())
    net, _ = load_denoiser(authors, torch.device("cpu"), num_resblocks=2, num_channels=8)
    assert net.config.flow == "pwc" and capsys.readouterr().err == ""
    net, _ = load_denoiser(bare, torch.device("cpu"), num_resblocks=2, num_channels=8)
    assert net.config.flow == "dis" and "bare state dict" in capsys.readouterr().err
    net, _ = load_denoiser(bare, torch.device("cpu"), num_resblocks=2, num_channels=8, flow="pwc")
    assert net.config.flow == "pwc" and "bare state dict" in capsys.readouterr().err


def test_pwc_weights_from_a_dis_trained_checkpoint_are_refused(tmp_path):
    model = _tiny_model()
    path = tmp_path / "dis.pth"
    save_checkpoint(path, {"args": {"flow_source": "dis"}, "state_dict": add_module_prefix(model.state_dict())})
    with pytest.raises(UserError, match="never trained"):
        load_pwc_weights(PWCNet(), path)
    save_checkpoint(path, {"args": dict(AUTHORS_ARGS), "state_dict": add_module_prefix(model.state_dict())})
    net = PWCNet()
    load_pwc_weights(net, path)  # an authors'-format file: its PWC-Net is the real one
    assert torch.equal(net.state_dict()[next(iter(net.state_dict()))],
                       model.pwcnet.state_dict()[next(iter(net.state_dict()))])


@pytest.mark.usefixtures("one_thread")
def test_training_resumed_from_an_authors_checkpoint_keeps_pwc_alignment(tmp_path):
    """An authors'-format ckpt_e1.pth in log_dir: resuming aligns with its PWC-Net (--flow auto and
    --flow pwc without --pwc_weights), and the new checkpoint records it."""
    train_dir = make_sequence_folders(tmp_path / "train", 1, 4, height=32, width=32)
    model = _tiny_model()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[100], gamma=0.5)
    for flow in ("auto", "pwc"):
        log_dir = tmp_path / f"log_{flow}"
        log_dir.mkdir()
        save_checkpoint(log_dir / "ckpt_e1.pth", {"args": dict(AUTHORS_ARGS),
                                                  "state_dict": add_module_prefix(model.state_dict()),
                                                  "optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict()})
        argv = tiny_argv(train_dir, None, log_dir, epochs=2, flow=flow, patches_per_epoch=2, batch_size=1)
        out = train(build_arg_parser().parse_args(argv))
        assert out["flow_source"] == "pwc" and out["start_epoch"] == 1
        saved = load_checkpoint(log_dir / "ckpt_e2.pth")
        assert saved["args"]["flow_source"] == "pwc"
        # The PWC-Net stayed the checkpoint's own (frozen), not re-initialised.
        key = "module.pwcnet.netExtractor.netOne.0.weight"
        assert torch.equal(saved["state_dict"][key], add_module_prefix(model.state_dict())[key])


def test_bdc_flow_trains_at_fixed_sigma_30_unless_told(tmp_path):
    parse = build_arg_parser().parse_args
    from engine.train.loop import validate_args
    for model, expected in (("bdc_flow", [30.0, 30.0]), ("bdc_2_unify", [5.0, 55.0])):
        args = parse(["--builtin", "bikes", "--model", model, "--log_dir", str(tmp_path / model)])
        validate_args(args)
        assert list(args.noise_ival) == expected
    args = parse(["--builtin", "bikes", "--model", "bdc_flow", "--noise_ival", "5", "55"])
    validate_args(args)
    assert list(args.noise_ival) == [5.0, 55.0]


def test_export_keeps_what_denoising_needs_and_drops_the_rest(tmp_path):
    from engine.commands.export_denoiser import main as export_main
    from engine.inference.sequence import denoise_sequence
    train_dir = make_sequence_folders(tmp_path / "train")
    run = train(build_arg_parser().parse_args(tiny_argv(train_dir, None, tmp_path / "log", flow="dis",
                                                        patches_per_epoch=4)))
    source, exported = tmp_path / "log" / "ckpt_e1.pth", tmp_path / "small.pth"
    assert export_main([str(source), "-o", str(exported)]) == 0
    saved = load_checkpoint(exported)
    assert "optimizer" not in saved and saved["history"] == run["history"]
    assert not any("pwcnet." in k for k in saved["state_dict"])
    assert exported.stat().st_size < source.stat().st_size / 3
    model, _ = load_denoiser(exported, torch.device("cpu"))
    original, _ = load_denoiser(source, torch.device("cpu"))
    noisy = torch.rand(3, 3, 32, 40)
    assert torch.equal(denoise_sequence(model, noisy, 0.1), denoise_sequence(original, noisy, 0.1))
    # Exporting over a training checkpoint would lose its optimizer state: refused.
    with pytest.raises(UserError, match="resumable training checkpoint"):
        export_main([str(exported), "-o", str(source)])
