"""The classical ISP for pictures: it undoes the simulated raw pipeline on a real frame."""
import numpy as np
import torch

from datasets.builtin import builtin_split
from datasets.simulated_raw import clean_raw
from utils.raw import BLACK_LEVEL, RAW_RANGE, pack_gbrg, unpack_gbrg
from utils.raw_isp import classical_isp, gray_world_gains, linear_to_srgb


def test_unpack_inverts_pack():
    mosaic = torch.arange(4 * 6.0).view(4, 6)
    assert torch.equal(unpack_gbrg(pack_gbrg(mosaic)), mosaic)


def test_linear_to_srgb_inverts_the_simulation_curve():
    from datasets.simulated_raw import srgb_to_linear
    v = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-12)


def test_simulated_raw_of_a_real_frame_comes_back_close_to_it():
    frame = builtin_split("carphone")[1][0]
    raw = (clean_raw(frame[None])[0] - BLACK_LEVEL) / RAW_RANGE
    packed = pack_gbrg(torch.from_numpy(raw).float())
    srgb = classical_isp(packed, np.ones(3, np.float32))
    error = np.abs(srgb * 255 - frame.astype(np.float32)).mean()
    assert error < 6.0, error            # demosaicking loses detail, not colour
    # A colour cast is removed by gray-world gains computed on the same scene.
    cast = packed * torch.tensor([1.6, 1.0, 1.0, 0.7]).view(4, 1, 1)
    balanced = classical_isp(cast, gray_world_gains(cast))
    assert np.abs(balanced.reshape(-1, 3).mean(0) - balanced.reshape(-1, 3).mean()).max() < 0.03
