"""Blind-spot blocks: the centre mask is applied at forward time, and the cell never sees p."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.blind_spot import BlindSpotCell, CentreMaskedConv2d, DilatedResidualUnit
from tests.models.helpers import positive_weights_


def test_mask_buffer_is_ones_except_centre_and_persistent():
    conv = CentreMaskedConv2d(4, 5, kernel_size=3, padding=1)
    assert conv.mask.shape == conv.weight.shape == (5, 4, 3, 3)
    assert "mask" in conv.state_dict()
    assert conv.mask[:, :, 1, 1].abs().sum() == 0
    assert conv.mask.sum().item() == 5 * 4 * 8


def test_mask_applied_at_forward_even_if_stored_weight_has_a_centre_tap():
    torch.manual_seed(0)
    conv = CentreMaskedConv2d(2, 3, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight[:, :, 1, 1] = 100.0  # as an official checkpoint may store it
    x = torch.randn(1, 2, 6, 6)
    expected = F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=1)
    unmasked = F.conv2d(x, conv.weight, conv.bias, padding=1)
    out = conv(x)
    assert torch.equal(out, expected)
    assert (out - unmasked).abs().max().item() > 1.0
    # The stored weight is left as it was (no in-place masking, unlike the official layer).
    assert conv.weight[0, 0, 1, 1].item() == 100.0
    out.sum().backward()
    assert conv.weight.grad[:, :, 1, 1].abs().sum().item() == 0.0


def test_dilated_residual_unit_is_identity_plus_body():
    unit = DilatedResidualUnit(4, dilation=2)
    x = torch.randn(1, 4, 7, 7)
    assert torch.allclose(unit(x), x + unit.body(x))
    assert unit.body[0].dilation == (2, 2) and unit.body[0].padding == (2, 2)


def test_cell_output_at_p_ignores_input_at_p_but_sees_neighbours():
    cell = positive_weights_(BlindSpotCell(in_ch=3, out_ch=4, base_ch=8, num_module=2))
    x = torch.rand(1, 3, 15, 15, requires_grad=True)
    cell(x)[0, :, 7, 7].sum().backward()
    grad = x.grad[0].abs().sum(0)
    assert grad[7, 7].item() == 0.0
    # The receptive field (radius 1 + 2 * num_module) holds exactly the offsets that are not
    # both even; stored centre taps are non-zero (positive_weights_) and still ignored.
    offsets = torch.arange(15) - 7
    odd = (offsets.view(-1, 1) % 2 == 1) | (offsets.view(1, -1) % 2 == 1)
    inside = (offsets.abs().view(-1, 1) <= 5) & (offsets.abs().view(1, -1) <= 5)
    assert torch.equal(grad > 0, odd & inside)
