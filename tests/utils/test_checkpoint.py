import os

import pytest
import torch
from torch import nn

from engine.inference.loading import add_module_prefix, infer_model_options, load_model_weights, strip_module_prefix
from utils.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from utils.errors import UserError


class _Residual(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(ch, ch, 1))


class _Head(nn.Module):
    def __init__(self, in_ch, ch):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_ch, ch, 1), nn.ReLU())


class _Dilate(nn.Module):
    def __init__(self, ch, out, units):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(ch, ch, 1, bias=False), *[_Residual(ch) for _ in range(units)],
                                   nn.Conv2d(ch, out, 1, bias=False))


class ToySTBN(nn.Module):
    """The key layout of STBN's `forward_rnn.head`, `concat` and `d2` at a tiny width."""

    def __init__(self, num_channels=4, num_resblocks=4, noise_map=True):
        super().__init__()
        self.forward_rnn = _Head(3 * (2 if noise_map else 1) + num_channels, num_channels)
        self.concat = _Dilate(2 * num_channels, num_channels, num_resblocks)
        self.d2 = _Dilate(num_channels, 9, num_resblocks // 2)


def _state(model):
    return {"args": {"num_resblocks": 4, "noise_ival": [30 / 255.]},
            "state_dict": add_module_prefix(model.state_dict()), "optimizer": {}, "scheduler": {}, "epoch": 3}


def test_round_trip_with_official_prefixed_keys(tmp_path):
    model = ToySTBN()
    path = checkpoint_path(tmp_path, 3)
    save_checkpoint(path, _state(model))
    assert path.name == "ckpt_e3.pth"
    assert os.listdir(tmp_path) == ["ckpt_e3.pth"]     # no temp file left behind
    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"args", "state_dict", "optimizer", "scheduler", "epoch"}
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    assert ckpt["args"]["noise_ival"] == [30 / 255.]
    other = ToySTBN()
    load_model_weights(other, ckpt)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_bare_state_dict_loads_too(tmp_path):
    model = ToySTBN()
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    other = ToySTBN()
    load_model_weights(other, load_checkpoint(tmp_path / "bare.pth"))
    assert torch.equal(other.d2.convs[0].weight, model.d2.convs[0].weight)


def test_prefix_helpers_are_inverse():
    sd = {"a.weight": torch.zeros(1), "module.b": torch.ones(1)}
    assert list(add_module_prefix(sd)) == ["module.a.weight", "module.b"]
    assert list(strip_module_prefix(add_module_prefix(sd))) == ["a.weight", "b"]


def test_mismatch_names_keys_and_suggests_options():
    ckpt = _state(ToySTBN(num_channels=6, num_resblocks=6))
    with pytest.raises(UserError) as info:
        load_model_weights(ToySTBN(num_channels=4, num_resblocks=4), ckpt, source="checkpoint 'x.pth'")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("checkpoint 'x.pth' does not fit the model")
    assert "2 missing (concat.convs.5.weight, d2.convs.3.weight); 14 unexpected (conca" in msg
    assert "forward_rnn.head.0.weight (6, 12, 1, 1) vs (4, 10, 1, 1)" in msg
    assert "--num_resblocks 6 --num_channels 6" in msg


def test_mismatch_suggests_the_flow_variant_for_a_checkpoint_without_noise_map():
    ckpt = _state(ToySTBN(noise_map=False))
    with pytest.raises(UserError, match="--model bdc_flow"):
        load_model_weights(ToySTBN(), ckpt)


def test_infer_model_options_on_the_official_layout():
    opts = infer_model_options(strip_module_prefix(_state(ToySTBN(num_channels=64, num_resblocks=5))["state_dict"]))
    assert opts == {"num_channels": 64, "num_resblocks": 5, "noise_map": True}


def test_truncated_and_foreign_files_raise_user_error_naming_the_file(tmp_path):
    good = tmp_path / "ckpt_e1.pth"
    save_checkpoint(good, _state(ToySTBN()))
    data = good.read_bytes()
    bad = tmp_path / "ckpt_e2.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="ckpt_e2.pth.*truncated"):
        load_checkpoint(bad)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(UserError, match="notes.pth"):
        load_checkpoint(text)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="no model weights"):
        load_model_weights(ToySTBN(), {"args": {}})


def test_latest_checkpoint_picks_highest_complete_epoch(tmp_path):
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 10):
        save_checkpoint(checkpoint_path(tmp_path, epoch), _state(ToySTBN()))
    (tmp_path / "pretrained.pth").write_bytes(b"x")
    (tmp_path / ".ckpt_e11.pth.abcd.tmp").write_bytes(b"partial")
    (tmp_path / "ckpt_e12.pth").write_bytes(checkpoint_path(tmp_path, 10).read_bytes()[:100])
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 10)


def test_failed_write_leaves_no_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = tmp_path / "ckpt_e1.pth"
    with pytest.raises(RuntimeError):
        save_checkpoint(target, {"state_dict": {}, "bad": Unpicklable()})
    assert os.listdir(tmp_path) == []


def test_unwritable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write checkpoint"):
        save_checkpoint(blocker / "ckpt_e1.pth", {"state_dict": {}})
