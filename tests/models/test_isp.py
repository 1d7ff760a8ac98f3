"""RViDeNet's ISP: the released weights' layout loads strictly; shapes and channel order."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from models.isp import RViDeNetISP, load_isp, to_isp_order
from tests.golden import GOLDEN_DIR
from utils.checkpoint import save_checkpoint
from utils.errors import UserError


def test_state_dict_is_the_released_layout():
    """Key names and shapes recorded from the authors' isp.pth (the weights are not in this repository)."""
    reference = json.loads((GOLDEN_DIR / "isp_state_dict_keys.json").read_text())["state_dict"]
    ours = [[k, list(v.shape)] for k, v in RViDeNetISP().state_dict().items()]
    assert ours == reference


def test_forward_shape_channel_order_and_file_loading(tmp_path):
    packed = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 8, 12)
    assert to_isp_order(packed)[0, :, 0, 0].tolist() == [0, 1, 3, 2]
    torch.manual_seed(0)
    isp = RViDeNetISP()
    assert isp(packed).shape == (1, 3, 16, 24)
    path = tmp_path / "isp.pth"
    save_checkpoint(path, {"state_dict": isp.state_dict()})
    loaded = load_isp(path)
    assert torch.equal(loaded(packed), isp(packed))
    save_checkpoint(path, {"state_dict": {"conv1_1.weight": torch.zeros(1)}})
    with pytest.raises(UserError, match="is not RViDeNet's ISP weights"):
        load_isp(path)


@pytest.mark.skipif(not os.environ.get("STBN_ISP_WEIGHTS"), reason="set STBN_ISP_WEIGHTS to the authors' isp.pth")
def test_the_released_file_loads_strictly():
    isp = load_isp(Path(os.environ["STBN_ISP_WEIGHTS"]))
    out = isp(torch.rand(1, 4, 16, 16))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
