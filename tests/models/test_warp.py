"""Feature warping: golden parity with the authors' nearest warp, shifts, rounding, FloRNN mode."""
import pytest
import torch

from models.warp import backward_warp
from tests.golden import load_golden


def test_nearest_matches_the_authors_warp_exactly():
    golden = load_golden()
    out = backward_warp(golden["warp_feat"], golden["warp_flow"])
    assert golden["warp_flow"].abs().max() > 1.0
    assert torch.equal(out, golden["warp_out"])


def _ramp(channels=2, height=5, width=7, dtype=torch.float32):
    return torch.arange(channels * height * width, dtype=dtype).view(1, channels, height, width) + 1


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_integer_shift_moves_pixels_and_zeros_the_outside(mode):
    x = _ramp()
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 0] = 2.0
    flow[:, 1] = -1.0
    out = backward_warp(x, flow, mode=mode)
    torch.testing.assert_close(out[:, :, 1:, :-2], x[:, :, :-1, 2:])
    assert out[:, :, 0].abs().max() == 0 and out[:, :, :, -2:].abs().max() == 0


def test_nearest_rounds_half_to_even():
    x = _ramp(1, 1, 6)
    flow = torch.zeros(1, 2, 1, 6)
    flow[:, 0] = 0.5  # samples at 0.5, 1.5, ... -> 0, 2, 2, 4, 4, outside(6)
    out = backward_warp(x, flow)
    assert out.flatten().tolist() == [1.0, 3.0, 3.0, 5.0, 5.0, 0.0]


def test_bilinear_is_flornn_interpolation_with_border_mask():
    x = _ramp(1, 1, 6)
    flow = torch.zeros(1, 2, 1, 6)
    flow[:, 0] = 0.25
    out = backward_warp(x, flow, mode="bilinear")
    assert out.flatten().tolist() == [1.25, 2.25, 3.25, 4.25, 5.25, 0.0]


def test_half_precision_features_use_a_float32_grid():
    x = torch.randn(1, 3, 40, 300)
    flow = torch.rand(1, 2, 40, 300) * 6 - 3
    out = backward_warp(x.bfloat16(), flow.bfloat16())
    assert out.dtype == torch.bfloat16
    # The bf16 flow has coarse steps, so compare with a float32 warp by the same rounded flow.
    torch.testing.assert_close(out, backward_warp(x.bfloat16().float(), flow.bfloat16().float()).bfloat16())


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown warp mode"):
        backward_warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="cubic")
    with pytest.raises(ValueError, match="does not match"):
        backward_warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 5))
