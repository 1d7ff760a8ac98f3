"""The model against the official code: state-dict layout and the golden output vector."""
from __future__ import annotations

import pytest
import torch

from models import build_model
from tests.golden import fill_official, load_golden, load_reference_keys


def test_state_dict_keys_order_and_shapes_equal_the_official_model():
    model = build_model("bdc_2_unify")
    reference = load_reference_keys()
    ours = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
    assert ours == [(key, shape) for key, shape, _ in reference]
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == {key for key, _, kind in reference if kind == "buffer"}


def test_eval_output_matches_official_golden_vector():
    """Fill-rule weights with pwcnet.* zero (flow 0): eval-mode output vs the authors' code."""
    golden = load_golden()
    model = build_model("bdc_2_unify")
    fill_official(model, zero_prefixes=("pwcnet.",))
    model.eval()
    with torch.inference_mode():
        out, second = model(golden["stbn_input_noisy"], golden["stbn_noise_map"])
    expected = golden["stbn_output"]
    assert second is None
    assert out.shape == expected.shape == (1, 5, 9, 48, 80)
    relative = ((out - expected).norm() / expected.norm()).item()
    worst = ((out - expected).abs().max() / expected.abs().max()).item()
    assert relative < 1e-4, relative
    assert worst < 1e-4, worst


@pytest.mark.slow
def test_three_training_steps_match_the_official_loop(monkeypatch):
    """`engine.train.step.train_step` (the step training runs) against three official steps of
    `sRGB_train_bsn.py` (tests/data/golden/README.md): same losses, gradient norms, updates."""
    import pytest

    from engine.train.step import train_step
    from tests.golden import GOLDEN_DIR

    path = GOLDEN_DIR / "stbn_train_golden.pt"
    if not path.is_file():
        pytest.skip(f"golden file {path} not found")
    golden = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model("bdc_2_unify")
    fill_official(model, zero_prefixes=("pwcnet.",), gain=float(golden["weight_gain"]))
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    groups = model.trainable_parameters()
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.Adam(groups, lr=float(golden["lr"]))
    noisy, sigma = golden["noisy"], golden["sigma"]
    sigmas = sigma.expand(noisy.shape[0])
    losses, norms = [], []
    real_clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm):
        norm = real_clip(parameters, max_norm)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    for _ in range(int(golden["steps"])):
        result = train_step(model, optimizer, params, noisy, torch.full_like(noisy, float(sigma)), sigmas)
        assert result.finite
        losses.append(result.loss)
    assert losses == pytest.approx(golden["loss"].tolist(), rel=1e-5, abs=1e-5)
    # The official centre taps also receive gradients (norm ~1e-4 of 33-205): within 1e-5.
    assert norms == pytest.approx(golden["grad_norm"].tolist(), rel=1e-5)
    current = dict(model.named_parameters())
    masked = torch.tensor(["branch1.body.0.weight" in n for n in golden["param_names"]])
    delta = torch.tensor([(current[n].detach().double() - before[n].double()).norm().item()
                          for n in golden["param_names"]], dtype=torch.float64)
    moved = golden["delta_norm"] > 0
    assert not (delta[~moved] > 0).any()
    assert torch.allclose(delta[moved & ~masked], golden["delta_norm"][moved & ~masked], rtol=1e-3)
    for name, value in golden["final"].items():
        ours = current[name].detach().clone()
        value = value.clone()
        if name.endswith("branch1.body.0.weight"):  # stored centre taps: never used by ours
            ours[:, :, 1, 1] = value[:, :, 1, 1] = 0
        assert torch.allclose(ours, value, rtol=1e-4, atol=1e-6), name
