"""Row bands: receptive-field radii, band heights, and banded == whole-frame results."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.blind_spot import BlindSpotCell
from models.dilated import DilatedStack
from models.tiling import band_rows, conv_radius, map_row_bands


def test_conv_radius_of_the_stbn_blocks():
    assert conv_radius(nn.Conv2d(1, 1, 3, padding=2, dilation=2)) == 2
    assert conv_radius(nn.Conv2d(1, 1, (5, 3), padding=(2, 1))) == 2
    # Cell: masked 3x3 (1) + five dilation-2 units (2 each); fusion: five units.
    assert conv_radius(BlindSpotCell(70, 64, 64, 5)) == 11
    assert conv_radius(DilatedStack(128, 128, 64, 5)) == 10
    assert conv_radius(nn.Conv2d(4, 4, 1)) == 0


def test_band_rows_splits_evenly_within_the_pixel_budget():
    assert band_rows(540, 960, None, 21) == 540
    # 2**18 pixels hold 273 rows of 960; minus 2 x 21 halo rows: 231 -> 3 bands of 180.
    assert band_rows(540, 960, 1 << 18, 21) == 180
    assert band_rows(540, 960, 1 << 30, 21) == 540
    assert band_rows(10, 100, 50, 3) == 1


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=2, dilation=2),
                         nn.Conv2d(4, 2, 1)).double()


@pytest.mark.parametrize("rows", [1, 2, 5, 7, 40])
def test_bands_with_the_receptive_radius_equal_the_whole_frame(rows):
    chain = _chain()
    x, y = torch.randn(2, 2, 17, 9, dtype=torch.float64).unbind(1)
    fn = lambda parts: chain(torch.cat([parts[0], parts[1], parts[0][:, :1]], 1))  # noqa: E731
    whole = fn([x[:, None].expand(2, 1, 17, 9), y[:, None]])
    radius = conv_radius(chain)
    assert radius == 3
    banded = map_row_bands(fn, [x[:, None].expand(2, 1, 17, 9), y[:, None]], radius, rows)
    assert banded.shape == whole.shape
    assert torch.allclose(banded, whole, rtol=0, atol=1e-12)


def test_a_halo_below_the_radius_changes_the_result():
    chain = _chain()
    x = torch.randn(1, 3, 17, 9, dtype=torch.float64)
    whole = chain(x)
    banded = map_row_bands(lambda parts: chain(parts[0]), [x], conv_radius(chain) - 1, 4)
    assert (banded - whole).abs().max().item() > 1e-3
