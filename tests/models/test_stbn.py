"""STBN: blind spot in every variant, `step`/`reconstruct` replay forward, registry and config.

`VARIANTS` covers every ablation switch and every registered direction fusion: a block added to
models/direction_fusion.py is tested here (blind spot), in tests/engine/test_inference.py (bounded
== one pass) and tests/engine/test_ablation_switches.py (checkpoint round trip) with no new test.
"""
from __future__ import annotations

import pytest
import torch

from models import StbnConfig, build_model
from models.direction_fusion import DIRECTION_FUSIONS
from models.stbn import STBN
from tests.models.helpers import positive_weights_
from utils.errors import UserError

SMALL = dict(img_channels=3, num_resblocks=2, num_channels=8)
VARIANTS = {
    "released": {},
    "bilinear": {"align": "bilinear"},
    "softsplat": {"align": "softsplat"},
    "no_bsa": {"bsa": False},
    "propagation_only": {"bsa": False, "direction_fusion": "pixelwise"},
    "no_noise_map": {"noise_map": False},
    **{f"fusion_{name}": {"direction_fusion": name} for name in DIRECTION_FUSIONS if name != "srfe"},
}


def _shift_flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """A made-up motion (1 px right, 1.5 px down) so that alignment really moves features."""
    flow = first.new_zeros(first.shape[0], 2, *first.shape[2:])
    flow[:, 0], flow[:, 1] = 1.0, 1.5
    return flow


def _small_model(monkeypatch, **options) -> STBN:
    torch.manual_seed(0)
    model = STBN(**SMALL, **options)
    for name in ("forward_rnn", "backward_rnn", "concat", "d", "d2"):
        if hasattr(model, name):
            positive_weights_(getattr(model, name))
    monkeypatch.setattr(model, "_flow_fn", lambda: _shift_flow)
    return model


def _clip(t=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.rand(1, t, 3, h, w, generator=g)
    return seq, torch.full_like(seq, 0.1)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_at_p_never_sees_the_noisy_input_at_p(monkeypatch, variant, mode):
    model = _small_model(monkeypatch, **VARIANTS[variant])
    model.train(mode == "train")
    seq, nmap = _clip()
    seq.requires_grad_(True)
    out, _ = model(seq, nmap)
    t, y, x = 1, 8, 7
    out[0, t, :, y, x].sum().backward()
    grad = seq.grad[0].abs().sum(1)  # (T,H,W)
    assert grad[t, y, x].item() == 0.0
    assert grad[t, y, x + 1].item() > 0 and grad[t, y + 1, x + 1].item() > 0
    assert grad[t - 1, y, x].item() > 0 and grad[t + 1, y, x].item() > 0


def test_step_and_reconstruct_replay_forward(monkeypatch):
    model = _small_model(monkeypatch).eval()
    seq, nmap = _clip(t=4, h=12, w=20)
    with torch.inference_mode():
        full, _ = model(seq, nmap)
        frames = [seq[:, i] for i in range(4)]
        forward_hs, h = [], None
        for i, frame in enumerate(frames):
            flow = None if i == 0 else model.pair_flow(frame, frames[i - 1])
            h = model.step("forward", frame, nmap[:, i], h, flow)
            forward_hs.append(h)
        outputs, g = [None] * 4, None
        for i in reversed(range(4)):
            flow = None if i == 3 else model.pair_flow(frames[i], frames[i + 1])
            g = model.step("backward", frames[i], nmap[:, i], g, flow)
            outputs[i] = model.reconstruct(forward_hs[i], g)
    assert torch.allclose(torch.stack(outputs, 1), full, rtol=1e-5, atol=1e-5)


def test_single_frame_clip_uses_both_cells_without_flow(monkeypatch):
    model = _small_model(monkeypatch).eval()
    seq, nmap = _clip(t=1, h=8, w=12)
    with torch.inference_mode():
        out, _ = model(seq, nmap)
        h = model.step("forward", seq[:, 0], nmap[:, 0])
        g = model.step("backward", seq[:, 0], nmap[:, 0])
        expected = model.reconstruct(h, g)
    assert out.shape == (1, 1, 9, 8, 12)
    assert torch.allclose(out[:, 0], expected, rtol=1e-6, atol=1e-6)


def test_output_chunking_does_not_change_the_result(monkeypatch):
    model = _small_model(monkeypatch).eval()
    seq, nmap = _clip(t=4, h=8, w=8)
    with torch.inference_mode():
        one_by_one, _ = model(seq, nmap, output_chunk_pixels=1)
        all_at_once, _ = model(seq, nmap, output_chunk_pixels=10 ** 9)
    assert torch.allclose(one_by_one, all_at_once, rtol=1e-5, atol=1e-5)


def test_train_and_eval_agree_and_flows_get_no_gradient():
    torch.manual_seed(0)
    model = STBN(**SMALL)
    seq, nmap = _clip(t=2, h=16, w=16)
    out_train, _ = model.train()(seq, nmap)
    out_train.square().mean().backward()
    assert all(p.grad is None for p in model.pwcnet.parameters())
    assert all(p.grad is not None for group in model.trainable_parameters() for p in group["params"])
    with torch.no_grad():
        out_eval, _ = model.eval()(seq, nmap)
    assert torch.allclose(out_train, out_eval, rtol=1e-5, atol=1e-6)


def test_noise_map_changes_the_output_only_when_read(monkeypatch):
    seq, nmap = _clip(t=2, h=8, w=8)
    with_map = _small_model(monkeypatch).eval()
    without = _small_model(monkeypatch, noise_map=False).eval()
    with torch.no_grad():
        assert not torch.allclose(with_map(seq, nmap)[0], with_map(seq, 2 * nmap)[0])
        assert torch.equal(without(seq, nmap)[0], without(seq)[0])
    with pytest.raises(ValueError, match="noise_level_map"):
        with_map(seq)


def test_registry_names_layouts_and_parameter_groups():
    released = build_model("bdc_2_unify")
    denoiser = sum(p.numel() for g in released.trainable_parameters() for p in g["params"])
    assert denoiser == 9_138_112  # the official model's denoiser parameter count
    groups = released.trainable_parameters()
    assert [len(g["params"]) for g in groups] == [
        len(list(m.parameters())) for m in (released.d2, released.forward_rnn, released.concat,
                                             released.backward_rnn, released.d)]
    assert groups[0]["params"][0] is released.d2.convs[0].weight
    flow_variant = build_model("bdc_flow", num_resblocks=2, num_channels=8)
    assert flow_variant.forward_rnn.head[0].weight.shape == (8, 11, 1, 1)
    assert build_model("stbn", **SMALL).config.noise_map
    config = StbnConfig(num_channels=8, num_resblocks=2, bsa=False)
    assert build_model(config).config is config and not hasattr(build_model(config), "concat")
    with pytest.raises(UserError, match="bdc_2_unify.*bdc_flow"):
        build_model("bdc_3")


def test_invalid_config_is_rejected_and_round_trips():
    with pytest.raises(ValueError, match="align"):
        STBN(**SMALL, align="cubic")
    with pytest.raises(ValueError, match="flow source"):
        StbnConfig(flow="raft")
    with pytest.raises(ValueError, match="direction fusion"):
        StbnConfig(direction_fusion="transformer")
    with pytest.raises(ValueError, match="unknown StbnConfig field"):
        StbnConfig.from_dict({"width": 3})
    config = StbnConfig(num_channels=16, flow="dis", direction_fusion="dilated")
    assert StbnConfig.from_dict(config.to_dict()) == config and config.head_outputs == 9
    assert config.replace(flow="zero").flow == "zero" and config.flow == "dis"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_banded_propagation_equals_the_whole_frame(monkeypatch, variant):
    """`band_pixels` only changes how a step is computed: first and later steps, every variant."""
    model = _small_model(monkeypatch, **VARIANTS[variant]).eval()
    frame, nmap = torch.rand(1, 3, 29, 12), torch.full((1, 3, 29, 12), 0.1)
    state = torch.rand(1, 8, 29, 12)
    flow = torch.zeros(1, 2, 29, 12)
    with torch.no_grad():
        for previous, motion in ((None, None), (state, flow)):
            whole = model.step("forward", frame, nmap, previous, motion)
            banded = model.step("forward", frame, nmap, previous, motion, band_pixels=12 * 20)
            assert (banded - whole).abs().max().item() < 1e-6
            assert whole.abs().mean().item() > 1e-3
