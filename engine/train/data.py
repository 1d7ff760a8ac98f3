"""Training clips and validation sequences of a training run (folders or a built-in clip)."""
from __future__ import annotations

import argparse
from collections.abc import Iterable

import numpy as np
import torch

from datasets.builtin import builtin_names, builtin_split
from datasets.eval_sequences import EvalSequenceDataset, to_unit_float
from datasets.train_clips import TrainClipDataset


def load_train_dataset(args: argparse.Namespace) -> TrainClipDataset:
    """Official training clips from --trainset_dir, or from the training parts of built-in clips."""
    options = dict(train_length=args.train_length, patch_size=args.patch_size,
                   patches_per_epoch=args.patches_per_epoch, augment=args.augment,
                   permute_colours=args.colour_augment, saturation=args.saturation_augment)
    if args.builtin:
        names = builtin_names(args.builtin)
        frames = [np.ascontiguousarray(builtin_split(name)[0].transpose(0, 3, 1, 2)) for name in names]
        return TrainClipDataset.from_sequences(frames, names=names, **options)
    return TrainClipDataset(args.trainset_dir, **options)


def load_val_sequences(args: argparse.Namespace) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, clean float (T,3,H,W)) validation sequences; empty when there is no validation set."""
    if args.builtin:
        return [(name, to_unit_float(builtin_split(name)[1][:args.val_max_frames]))
                for name in builtin_names(args.builtin)]
    if args.valset_dir:
        return EvalSequenceDataset(args.valset_dir, max_num_fr_per_seq=args.val_max_frames)
    return []

