"""The model against the official code: state-dict layout and the golden output vector."""
from __future__ import annotations

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
