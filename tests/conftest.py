"""Test-session settings shared by every test folder.

Tests use tiny tensors, which gain nothing from several intra-op threads; on a CPU shared with
other jobs, every multi-threaded op then waits on an OpenMP barrier (milliseconds each). One
thread made tests/models run in 15 s instead of 180 s on the busy 2-core development machine.
"""
import shutil

import cv2
import numpy as np
import pytest
import torch

from engine.inference.loading import add_module_prefix
from models import build_model
from tests.engine.synthetic import make_sequence_folders
from utils.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good and broken inputs: training / evaluation frame folders, checkpoints, a blocking file."""
    root = tmp_path_factory.mktemp("robust")
    train = make_sequence_folders(root / "train", 1, 6)
    truncated = root / "train_truncated"
    shutil.copytree(train, truncated)
    frame = truncated / "seq0" / "00003.png"
    frame.write_bytes(frame.read_bytes()[:200])
    mixed = root / "train_mixed"
    shutil.copytree(train, mixed)
    cv2.imwrite(str(mixed / "seq0" / "00002.png"), np.zeros((24, 48, 3), np.uint8))
    (root / "empty").mkdir()
    (root / "no_images" / "seq0").mkdir(parents=True)
    (root / "no_images" / "seq0" / "readme.txt").write_text("not a frame")
    torch.manual_seed(0)
    model = build_model("bdc_2_unify", num_channels=8, num_resblocks=2)
    ckpt = root / "tiny.pth"
    save_checkpoint(ckpt, {"args": {"flow_source": "zero"}, "state_dict": add_module_prefix(model.state_dict())})
    (root / "junk.pth").write_text("these are notes, not weights")
    (root / "cut.pth").write_bytes(ckpt.read_bytes()[:4096])
    (root / "blocker").write_text("a file where a folder is expected")
    return {"root": root, "train": train, "truncated": truncated, "mixed": mixed, "ckpt": ckpt}

