"""Self-supervised STBN training on raw Bayer video (behind `CRVD_train.py`), on the shared loop.

The official CRVD recipe (ZKCCZ/STBN train_models/CRVD_train.py): the raw model `BR_d_c_raw` (4
packed channels, no noise map, a mean-only head) trained with the plain blind-spot MSE against the
real noisy captures of CRVD scenes 7-11, no gradient clipping, MultiStepLR per epoch; after each
epoch the 25 test sequences are denoised, quantised to 12 bits and scored per ISO (the log shows
the mean of the five per-ISO means, not their sum as the official log does). The loop, resume,
logs, curves and checkpoints are engine/train/loop.py's; engine/train/tasks.py `RawTask` is the recipe.

Additions: `--builtin CLIP` trains on simulated raw video made from a built-in clip (written as a
CRVD tree in a temporary folder and read by the real readers), and `--raw_loss gaussian` trains a
mean + covariance-factor head by the heteroscedastic likelihood (noise variance a*x + b from the
ISO) and denoises with the posterior mean.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from datasets.crvd import CRVDTestDataset, CRVDTrainDataset
from datasets.simulated_raw import SIMULATED_SIZE, write_simulated_crvd
from engine.train.args import add_run_arguments, add_schedule_arguments, require, validate_schedule_args
from engine.train.loop import train
from engine.train.tasks import RAW_LOSSES, RawTask
from utils.errors import BOUNDED_INT, UserArgumentParser, official_bool
from utils.paths import refuse_overlap

RAW_MODELS = ("BR_d_c_raw", "stbn_raw")


def build_arg_parser() -> argparse.ArgumentParser:
    """Every official `CRVD_train.py` argument with its official default, plus our options."""
    p = UserArgumentParser(description="Self-supervised STBN training on raw (Bayer) video: CRVD or simulated raw.")
    official = p.add_argument_group("official arguments (defaults as the authors' script)")
    official.add_argument("--model", default="BR_d_c_raw", choices=RAW_MODELS,
                          help="the raw model (BR_d_c_raw = stbn_raw)")
    official.add_argument("--num_resblocks", type=BOUNDED_INT, default=15, help="residual units (the head gets half)")
    add_schedule_arguments(official, batch_size=16, epochs=12, lr=1e-4, print_every=100)
    official.add_argument("--patch_size", "--p", type=BOUNDED_INT, default=96,
                          help="training crop size in packed pixels (2x in raw pixels)")
    official.add_argument("--patches_per_epoch", "--n", type=BOUNDED_INT, default=256000, help="clips per epoch")
    official.add_argument("--mirror_seq", type=official_bool, default=False, metavar="BOOL",
                          help="append the time-reversed clip (14 frames)")
    official.add_argument("--CRVD_dir", help="CRVD root (STBN's or FloRNN's folder layout)")
    official.add_argument("--log_dir", help="checkpoints and logs (default logs/raw, or logs/builtin_raw with "
                                            "--builtin); rerunning resumes")
    extra = p.add_argument_group("additional options")
    extra.add_argument("--builtin", metavar="CLIP",
                       help="train on simulated raw video made from a built-in clip (bikes, carphone), no download")
    extra.add_argument("--builtin_size", type=BOUNDED_INT, nargs=2, default=list(SIMULATED_SIZE),
                       metavar=("H", "W"), help="raw frame size of the simulated video (even)")
    extra.add_argument("--raw_loss", default="mse", choices=RAW_LOSSES,
                       help="mse: the official blind-spot loss (mean-only head); gaussian: heteroscedastic "
                            "likelihood with a covariance head and posterior-mean output (ours)")
    extra.add_argument("--num_channels", type=BOUNDED_INT, default=64, help="hidden feature width")
    add_run_arguments(extra)
    # The shared loop's options that the raw recipe keeps at their official values.
    p.set_defaults(align="nearest", no_bsa=False, no_srfe=False, fusion="srfe", distill=False, teacher="pwc",
                   student_init="default")
    return p


def validate_raw_args(args: argparse.Namespace) -> None:
    """One-line `UserError` for inconsistent arguments; fills in the default log_dir."""
    require((args.CRVD_dir is None) != (args.builtin is None),
             "give exactly one of --CRVD_dir DIR (the CRVD root) or --builtin CLIP (simulated raw)")
    require(args.CRVD_dir is None or Path(args.CRVD_dir).is_dir(),
             f"--CRVD_dir: '{args.CRVD_dir}' is not an existing folder")
    validate_schedule_args(args)
    height, width = args.builtin_size
    require(height % 2 == 0 and width % 2 == 0, f"--builtin_size must be even (a Bayer mosaic), got {height} {width}")
    if args.log_dir is None:
        args.log_dir = "logs/builtin_raw" if args.builtin else "logs/raw"
    require(not Path(args.log_dir).is_file(), f"--log_dir: '{args.log_dir}' is a file, not a folder")
    refuse_overlap(args.log_dir, "--log_dir", [("--CRVD_dir", args.CRVD_dir)])


def raw_data(args: argparse.Namespace) -> tuple[CRVDTrainDataset, RawTask]:
    """The official raw training set and its validation (CRVD, or simulated raw from a built-in clip)."""
    validate_raw_args(args)
    with tempfile.TemporaryDirectory(prefix="stbn-simulated-raw-") as scratch:
        root = args.CRVD_dir
        if root is None:  # the readers keep every frame in memory: the folder can go afterwards
            height, width = args.builtin_size
            root = write_simulated_crvd(Path(scratch), args.builtin, height=height, width=width)
        train_set = CRVDTrainDataset(root, args.patch_size, args.patches_per_epoch, mirror_seq=args.mirror_seq)
        val_set = CRVDTestDataset(root)
    return train_set, RawTask(args.raw_loss, val_set)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `CRVD_train.py`."""
    train(build_arg_parser().parse_args(argv), data=raw_data)
    return 0
