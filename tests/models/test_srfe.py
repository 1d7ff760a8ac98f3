"""SRFE: the shuffle index maps against the official formula, padding/cropping, fused-pair path."""
from __future__ import annotations

import itertools

import pytest
import torch

from models.srfe import SRFE, shuffle_down, shuffle_up
from tests.models.helpers import positive_weights_


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_shuffle_down_follows_the_official_index_map(memory_format):
    b, c, h, w = 2, 3, 8, 12
    x = torch.arange(b * c * h * w, dtype=torch.float64).reshape(b, c, h, w)
    out = shuffle_down(x.contiguous(memory_format=memory_format))
    assert out.is_contiguous(memory_format=memory_format)
    assert out.shape == (b, 4 * c, h // 2, w // 2)
    for bb, cc, a, e, n, m, hh, ww in itertools.product(range(b), range(c), range(h // 4), range(w // 4),
                                                          range(2), range(2), range(2), range(2)):
        assert out[bb, cc * 4 + n * 2 + m, 2 * a + hh, 2 * e + ww] == x[bb, cc, 4 * a + 2 * n + hh, 4 * e + 2 * m + ww]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_shuffle_up_inverts_shuffle_down(memory_format):
    x = torch.randn(1, 5, 12, 8).contiguous(memory_format=memory_format)
    assert torch.equal(shuffle_up(shuffle_down(x)), x)
    y = torch.randn(1, 8, 6, 4).contiguous(memory_format=memory_format)
    assert shuffle_up(y).is_contiguous(memory_format=memory_format)
    assert torch.equal(shuffle_down(shuffle_up(y)), y)


def test_srfe_pads_crops_and_fuses_the_pair_in_order():
    torch.manual_seed(0)
    srfe = SRFE(in_channels=4).eval()
    x1, x2 = torch.randn(1, 4, 10, 13), torch.randn(1, 4, 10, 13)
    out = srfe(x1, x2)
    assert out.shape == x1.shape
    # Explicit pipeline: zero-pad to 12x16, shuffle each, concatenate (forward first), fuse, crop.
    def pad(t):
        return torch.nn.functional.pad(t, (0, 3, 0, 2))
    fused = srfe.encoder.interpolate(torch.cat([shuffle_down(pad(x1)), shuffle_down(pad(x2))], 1))
    assert torch.allclose(out, shuffle_up(fused)[..., :10, :13], atol=1e-6)
    assert not torch.allclose(out, srfe(x2, x1), atol=1e-3)


def test_srfe_only_mixes_even_offsets():
    srfe = positive_weights_(SRFE(in_channels=2))
    x = torch.rand(1, 2, 16, 16, requires_grad=True)
    srfe(x, torch.zeros_like(x))[0, :, 6, 6].sum().backward()
    seen = x.grad[0].abs().sum(0) > 0
    even = torch.arange(16) % 2 == 0
    # Every even-even pixel of the (padded-free) 16x16 frame is reached, nothing else.
    assert torch.equal(seen, even.view(-1, 1) & even.view(1, -1))
