from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datasets.eval_sequences import EvalSequenceDataset, official_frame_order, to_unit_float
from utils.errors import UserError


def _write(path, value):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = value, 255 - value, (value * 7) % 256
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _official_read(path):
    return np.float32(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) / 255.)


def test_order_is_by_all_digits_of_the_full_path(tmp_path):
    root = tmp_path / "Set8"
    folder = root / "seq1"
    folder.mkdir(parents=True)
    names = ["f10.png", "f2.png", "f1.png", "f9.png", "011.png", "0010.png", "f3.jpg"]
    for i, name in enumerate(names):
        _write(folder / name, i * 10)
    ds = EvalSequenceDataset(str(root))
    # Each path gives int(<prefix digits> + <name digits>): a longer name-digit string is always larger,
    # so '0010' (4 digits) comes after '011' (3 digits) although 10 < 11.
    expected = ["f1.png", "f2.png", "f3.jpg", "f9.png", "f10.png", "011.png", "0010.png"]
    assert [p.name for p in ds.sequences[0][1]] == expected
    prefix = "".join(c for c in str(root) if c.isdigit()) + "1"
    keys = [int(prefix + "".join(c for c in n if c.isdigit())) for n in expected]
    assert keys == sorted(keys)
    name, seq = ds[0]
    assert name == "seq1" and seq.shape == (7, 3, 4, 6) and seq.dtype == torch.float32
    for t, frame_name in enumerate(expected):
        assert np.array_equal(seq[t].numpy(), _official_read(folder / frame_name))


def test_frame_cap_hidden_and_empty_folders(tmp_path, capsys):
    for seq in ("b", "a"):
        (tmp_path / seq).mkdir()
        for t in range(5):
            _write(tmp_path / seq / f"{t:03d}.png", t)
    (tmp_path / ".cache").mkdir()
    (tmp_path / "empty").mkdir()
    ds = EvalSequenceDataset(tmp_path, max_num_fr_per_seq=3)
    assert ds.names == ["a", "b"] and len(ds) == 2
    assert "skipping sequence folder" in capsys.readouterr().err
    name, seq = ds[1]
    assert name == "b" and seq.shape[0] == 3
    assert torch.equal(seq[:, 0, 0, 0], torch.tensor([0, 1, 2], dtype=torch.float32) / 255)


def test_jpeg_values_equal_the_official_cv2_reading(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "00001.jpg"), rgb)
    _, seq = EvalSequenceDataset(tmp_path)[0]
    assert np.array_equal(seq[0].numpy(), _official_read(folder / "00001.jpg"))


def test_unit_float_table_matches_float64_division():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    out = to_unit_float(values)
    assert np.array_equal(out[0, 0].numpy(), np.float32(values[0, :, :, 0] / 255.))
    assert out.shape == (1, 3, 16, 16) and out.is_contiguous()


def test_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        EvalSequenceDataset(tmp_path / "nope")
    (tmp_path / "s").mkdir()
    with pytest.raises(UserError, match="no sequence folder .* holds images"):
        EvalSequenceDataset(tmp_path)
    with pytest.raises(UserError, match="max_num_fr_per_seq"):
        EvalSequenceDataset(tmp_path, max_num_fr_per_seq=0)


def test_order_falls_back_to_names_without_digits(tmp_path):
    frames = [Path("b.png"), Path("a.png")]
    assert official_frame_order("root", "seq", frames) == [Path("a.png"), Path("b.png")]
