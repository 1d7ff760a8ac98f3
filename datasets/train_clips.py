"""Training clips as the official STBN sampler draws them (FloRNN's SrgbTrainDataset).

Every sequence is kept in memory as uint8 (T,3,H,W). Clips of `train_length` frames start every
`temp_stride` frames, so a sequence of n frames gives (n - train_length + temp_stride) //
temp_stride clips; the clips of all sequences are numbered in sequence order and dataset index
i maps to clip i % total_clips, so one epoch has `patches_per_epoch` samples. One random
patch_size x patch_size window, the same for every frame, is cut from the clip. The official
training uses no augmentation; `augment=True` applies one of the 8 flips/rotations per clip and
`permute_colours=True` one of the 6 orders of the RGB channels and `saturation=S` scales each clip's
colour (its difference to the per-pixel channel mean) by a factor drawn uniformly in [1, S], so that
a network trained on nearly grey footage still learns that colour is signal, not noise.

Randomness comes from torch's global generator, which the DataLoader seeds per worker from the
main process's seed: runs are reproducible for a given `torch.manual_seed` and worker count, and
workers never repeat each other's crops.
"""
from __future__ import annotations

import bisect
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.image_folder import list_frames, list_sequence_dirs, read_frames
from utils.errors import UserError, warn


def clips_in_sequence(num_frames: int, train_length: int, temp_stride: int) -> int:
    """Number of clips the official sampler takes from a sequence (0 when it is too short)."""
    return max(0, (num_frames - train_length + temp_stride) // temp_stride)


def dihedral(clip: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations (k in 0..7) of a (..., H, W) tensor: rot90 k%4 times,
    then a vertical flip when k >= 4."""
    out = torch.rot90(clip, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-2,)) if k >= 4 else out


def saturate(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """(T,3,H,W) clip with its colour scaled by `factor` around the per-pixel channel mean, in the
    clip's dtype (uint8 clips are rounded and clipped to 0..255, float ones clipped to [0, 1])."""
    values = clip.float()
    gray = values.mean(dim=1, keepdim=True)
    out = gray + factor * (values - gray)
    if clip.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.clamp_(0, 1).to(clip.dtype)


def _usable_sequences(names: list[str], lengths: list[int], train_length: int, source: str) -> list[int]:
    """Indices of sequences with at least `train_length` frames; warns about the others and
    raises `UserError` when none is left."""
    if train_length < 1:
        raise UserError(f"train_length must be positive, got {train_length}")
    for name, length in zip(names, lengths):
        if length < train_length:
            warn(f"skipping sequence '{name}': {length} frame(s), fewer than train_length={train_length}",
                 once=False)
    usable = [i for i, length in enumerate(lengths) if length >= train_length]
    if not usable:
        raise UserError(f"no sequence in {source} has at least train_length={train_length} frames")
    return usable


class TrainClipDataset(Dataset):
    """Random `patch_size` crops of `train_length`-frame clips; items are (T,3,P,P) tensors of the
    sequences' dtype (uint8 from frame folders)."""

    def __init__(self, seq_dir: str | os.PathLike, train_length: int = 8, patch_size: int = 96,
                 patches_per_epoch: int | None = 32000, temp_stride: int = 3, augment: bool = False,
                 permute_colours: bool = False, saturation: float = 1.0):
        folders = list_sequence_dirs(seq_dir)
        frame_lists = [list_frames(folder) for folder in folders]
        names = [str(folder) for folder in folders]
        usable = _usable_sequences(names, [len(f) for f in frame_lists], train_length, f"'{seq_dir}'")
        sequences = [read_frames(frame_lists[i], names[i]).transpose(0, 3, 1, 2) for i in usable]
        self._setup(sequences, [names[i] for i in usable], train_length, patch_size, patches_per_epoch,
                    temp_stride, augment, permute_colours, saturation)

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray | torch.Tensor], train_length: int = 8,
                       patch_size: int = 96, patches_per_epoch: int | None = 32000, temp_stride: int = 3,
                       augment: bool = False, names: Sequence[str] | None = None,
                       permute_colours: bool = False, saturation: float = 1.0) -> TrainClipDataset:
        """Build from in-memory (T,3,H,W) sequences: uint8 frames (e.g. a built-in clip), or float32
        ones (a noisy sequence as the evaluation protocol draws it, for per-video fine-tuning)."""
        arrays = [np.ascontiguousarray(s.numpy() if isinstance(s, torch.Tensor) else s) for s in sequences]
        for i, seq in enumerate(arrays):
            if seq.dtype not in (np.uint8, np.float32) or seq.ndim != 4 or seq.shape[1] != 3:
                raise ValueError(f"sequence {i}: expected uint8 or float32 (T,3,H,W), got {seq.dtype} {seq.shape}")
        names = list(names) if names else [f"sequence {i}" for i in range(len(arrays))]
        usable = _usable_sequences(names, [len(a) for a in arrays], train_length, "the given sequences")
        dataset = cls.__new__(cls)
        dataset._setup([arrays[i] for i in usable], [names[i] for i in usable], train_length, patch_size,
                       patches_per_epoch, temp_stride, augment, permute_colours, saturation)
        return dataset

    def _setup(self, sequences, names, train_length, patch_size, patches_per_epoch, temp_stride, augment,
               permute_colours=False, saturation=1.0):
        if patch_size < 1 or temp_stride < 1:
            raise UserError(f"patch_size ({patch_size}) and temp_stride ({temp_stride}) must be positive")
        if patches_per_epoch is not None and patches_per_epoch < 1:
            raise UserError(f"patches_per_epoch must be positive, got {patches_per_epoch}")
        for name, seq in zip(names, sequences):
            height, width = seq.shape[2:]
            if height < patch_size or width < patch_size:
                raise UserError(f"sequence '{name}': frames are {width}x{height}, smaller than "
                                f"patch_size={patch_size}; lower --patch_size")
        self.names, self.sequences = list(names), list(sequences)
        self.train_length, self.patch_size, self.temp_stride = train_length, patch_size, temp_stride
        self.patches_per_epoch, self.augment, self.permute_colours = patches_per_epoch, augment, permute_colours
        if not saturation >= 1.0:
            raise UserError(f"the saturation factor must be at least 1, got {saturation}")
        self.saturation = saturation
        counts = [clips_in_sequence(len(s), train_length, temp_stride) for s in self.sequences]
        self.clip_ends = np.cumsum(counts).tolist()

    @property
    def total_clips(self) -> int:
        return self.clip_ends[-1]

    def __len__(self) -> int:
        return self.total_clips if self.patches_per_epoch is None else self.patches_per_epoch

    def clip_location(self, index: int) -> tuple[int, int]:
        """(sequence number, first frame) of the clip that dataset index `index` maps to."""
        clip = index % self.total_clips
        seq = bisect.bisect_right(self.clip_ends, clip)
        first_clip = self.clip_ends[seq - 1] if seq else 0
        return seq, (clip - first_clip) * self.temp_stride

    def __getitem__(self, index: int) -> torch.Tensor:
        seq, start = self.clip_location(index)
        frames = self.sequences[seq]
        height, width = frames.shape[2:]
        top = int(torch.randint(0, height - self.patch_size + 1, ()))
        left = int(torch.randint(0, width - self.patch_size + 1, ()))
        clip = torch.from_numpy(np.ascontiguousarray(
            frames[start:start + self.train_length, :, top:top + self.patch_size, left:left + self.patch_size]))
        if self.augment:
            clip = dihedral(clip, int(torch.randint(0, 8, ()))).contiguous()
        if self.permute_colours:
            clip = clip[:, torch.randperm(3)]
        if self.saturation > 1.0:
            clip = saturate(clip, 1.0 + (self.saturation - 1.0) * float(torch.rand(())))
        return clip
