"""Evaluation sequences read as the official test reads Set8 / DAVIS (FastDVDnet's open_sequence).

One sub-folder per sequence, in sorted order. Inside a folder the frames are ordered by the
integer formed by all digits of their full path (`os.path.join(root, sequence, file)`, so pass
the same root string as the official `--test_path` for identical order); ties, and files whose
path has no digits (the official code crashes on those), fall back to the file name. Only the
first `max_num_fr_per_seq` frames are used, decoded like `cv2.imread` + BGR->RGB and scaled with
`np.float32(x / 255.)`; no cropping or padding. Sequences are read lazily, one per item.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.image_folder import list_frames, list_sequence_dirs, read_frames
from utils.errors import UserError, warn

# float32(k / 255.) for every 8-bit value k: the official normalisation, computed once.
UINT8_TO_UNIT = np.float32(np.arange(256) / 255.)


def official_frame_order(root: str, sequence: str, frames: list[Path]) -> list[Path]:
    """Sort frames by the integer made of all digits in `os.path.join(root, sequence, name)`."""
    def key(frame: Path):
        digits = "".join(c for c in os.path.join(root, sequence, frame.name) if c.isdigit())
        return (int(digits) if digits else -1, frame.name)
    return sorted(frames, key=key)


def to_unit_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T,H,W,3) -> float32 (T,3,H,W) in [0, 1], bit-identical to `np.float32(x / 255.)`."""
    return torch.from_numpy(UINT8_TO_UNIT[frames]).permute(0, 3, 1, 2).contiguous()


class EvalSequenceDataset(Dataset):
    """Items `(sequence name, float32 tensor (T,3,H,W) in [0, 1])`, one per sequence folder."""

    def __init__(self, root: str | os.PathLike, max_num_fr_per_seq: int = 85):
        if max_num_fr_per_seq < 1:
            raise UserError(f"--max_num_fr_per_seq must be at least 1, got {max_num_fr_per_seq}")
        self.root = str(root)
        self.sequences: list[tuple[str, list[Path]]] = []
        for folder in list_sequence_dirs(root):
            frames = list_frames(folder)
            if not frames:
                warn(f"skipping sequence folder '{folder}': it holds no images")
                continue
            ordered = official_frame_order(self.root, folder.name, frames)
            self.sequences.append((folder.name, ordered[:max_num_fr_per_seq]))
        if not self.sequences:
            raise UserError(f"no sequence folder in '{root}' holds images")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor]:
        name, frames = self.sequences[index]
        return name, to_unit_float(read_frames(frames, os.path.join(self.root, name)))
