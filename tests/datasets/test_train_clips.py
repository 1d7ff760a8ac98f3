import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datasets.train_clips import TrainClipDataset, clips_in_sequence, dihedral
from utils.errors import UserError


def _coded_sequence(num_frames, seq_id, h=20, w=24):
    """uint8 (T,3,H,W) whose channels hold (seq_id*50 + frame index, row, column)."""
    seq = np.zeros((num_frames, 3, h, w), np.uint8)
    seq[:, 0] = (seq_id * 50 + np.arange(num_frames))[:, None, None]
    seq[:, 1] = np.arange(h)[:, None]
    seq[:, 2] = np.arange(w)[None, :]
    return seq


def _dataset(**kw):
    seqs = [_coded_sequence(11, 0), _coded_sequence(8, 1), _coded_sequence(5, 2)]
    options = dict(train_length=8, patch_size=8, patches_per_epoch=10)
    options.update(kw)
    return TrainClipDataset.from_sequences(seqs, **options)


def test_clip_count_rule():
    assert [clips_in_sequence(n, 8, 3) for n in (7, 8, 10, 11, 85)] == [0, 1, 1, 2, 26]


def test_index_maps_to_clips_modulo_total_and_short_sequences_are_skipped(capsys):
    ds = _dataset()
    assert "skipping sequence 'sequence 2': 5 frame(s)" in capsys.readouterr().err
    assert ds.total_clips == 2 + 1 and len(ds) == 10
    expected = [(0, 0), (0, 3), (1, 0)]
    for index in range(10):
        seq, start = expected[index % 3]
        frames = ds[index][:, 0, 0, 0].tolist()
        assert frames == [seq * 50 + start + t for t in range(8)]
    assert len(_dataset(patches_per_epoch=None)) == 3


def test_one_crop_shared_by_all_frames_inside_bounds_and_varied():
    torch.manual_seed(0)
    ds = _dataset()
    corners = set()
    for index in range(60):
        clip = ds[index]
        assert clip.dtype == torch.uint8 and clip.shape == (8, 3, 8, 8)
        rows, cols = clip[:, 1, :, 0], clip[:, 2, 0, :]
        assert torch.all(rows == rows[0]) and torch.all(cols == cols[0])   # same window in every frame
        top, left = int(rows[0, 0]), int(cols[0, 0])
        assert torch.equal(rows[0], torch.arange(top, top + 8, dtype=torch.uint8))
        assert 0 <= top <= 20 - 8 and 0 <= left <= 24 - 8
        corners.add((top, left))
    assert len(corners) > 30


def test_crops_reproducible_from_global_seed():
    ds = _dataset()
    torch.manual_seed(7)
    first = [ds[i] for i in range(5)]
    torch.manual_seed(7)
    assert all(torch.equal(a, ds[i]) for i, a in enumerate(first))


def test_dataloader_with_workers_is_reproducible_and_workers_differ():
    ds = _dataset(patches_per_epoch=8)

    def batches():
        torch.manual_seed(3)
        return [b for b in DataLoader(ds, batch_size=2, num_workers=2, shuffle=True)]

    one, two = batches(), batches()
    assert len(one) == 4 and one[0].shape == (2, 8, 3, 8, 8)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    corners = {(int(c[0, 1, 0, 0]), int(c[0, 2, 0, 0])) for b in one for c in b}
    assert len(corners) > 4


def test_distributed_sampler_splits_the_epoch():
    ds = _dataset(patches_per_epoch=10)
    parts = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 5
    assert sorted(parts[0] + parts[1]) == list(range(10))


def test_dihedral_gives_eight_distinct_transforms():
    patch = torch.arange(9).view(1, 3, 3)
    outs = {tuple(dihedral(patch, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8
    assert torch.equal(dihedral(patch, 0), patch)
    assert torch.equal(dihedral(patch, 4), patch.flip(-2))


def test_augment_applies_one_transform_to_the_whole_clip():
    torch.manual_seed(1)
    ds = _dataset(augment=True)
    transforms = set()
    for index in range(40):
        clip = ds[index].long()
        assert torch.all(clip[:, 1:] == clip[:1, 1:])       # same spatial transform on all frames
        rows = clip[0, 1]
        transforms.add((bool(rows[0, 0] == rows[0, 1]), bool(rows[0, 0] < rows[-1, -1])))
    assert len(transforms) == 4    # rows run down, up, right or left: transposed and flipped clips occur


def _write_folder(root, sizes):
    for name, (count, h, w) in sizes.items():
        folder = root / name
        folder.mkdir(parents=True)
        for t in range(count):
            cv2.imwrite(str(folder / f"{t:05d}.png"), np.full((h, w, 3), t, np.uint8))


def test_folder_dataset_reads_png_sequences(tmp_path):
    _write_folder(tmp_path, {"a": (10, 12, 14), "b": (3, 12, 14)})
    ds = TrainClipDataset(tmp_path, train_length=4, patch_size=8, patches_per_epoch=None)
    assert ds.names == [str(tmp_path / "a")]                 # b is shorter than train_length
    assert ds.total_clips == (10 - 4 + 3) // 3 == len(ds)
    assert ds[2][:, 0, 0, 0].tolist() == [6, 7, 8, 9]


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        TrainClipDataset(tmp_path / "none")
    _write_folder(tmp_path, {"short": (3, 12, 14)})
    with pytest.raises(UserError, match="no sequence .* at least train_length=8"):
        TrainClipDataset(tmp_path, patch_size=8)
    with pytest.raises(UserError, match=r"sequence 'seq'.*frames are 14x12, smaller than patch_size=16"):
        TrainClipDataset.from_sequences([np.zeros((8, 3, 12, 14), np.uint8)], patch_size=16, names=["seq"])


def test_permute_colours_reorders_the_channels_of_a_whole_clip():
    torch.manual_seed(2)
    ds = _dataset(permute_colours=True)
    orders = set()
    for index in range(60):
        clip = ds[index].long()
        # Channel 0 codes the frame index (varies over time), 1 the row, 2 the column.
        kinds = []
        for c in range(3):
            plane = clip[:, c]
            kinds.append("t" if plane[0].eq(plane[0, 0, 0]).all() and not plane.eq(plane[0, 0, 0]).all()
                         else "r" if bool((plane[0, :, 0] == plane[0, :, -1]).all()) else "c")
        assert sorted(kinds) == ["c", "r", "t"], kinds    # a permutation, the same for every frame
        orders.add(tuple(kinds))
    assert len(orders) == 6


def test_saturation_scales_colour_around_the_gray_value():
    from datasets.train_clips import saturate
    clip = torch.tensor([100, 110, 120], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    assert saturate(clip, 2.0)[:, :, 0, 0].tolist() == [[90, 110, 130]] * 2
    bright = torch.tensor([10, 250, 250], dtype=torch.uint8).view(1, 3, 1, 1)
    assert saturate(bright, 3.0).view(-1).tolist() == [0, 255, 255]
    torch.manual_seed(0)
    ds = _dataset(saturation=3.0)
    spreads = {float(ds[i][:, 2].float().std()) for i in range(6)}
    assert len(spreads) > 1   # a random factor per clip
    with pytest.raises(UserError, match="at least 1"):
        _dataset(saturation=0.5)
