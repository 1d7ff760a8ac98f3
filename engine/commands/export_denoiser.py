"""Turn a training checkpoint into a small denoiser file to ship or share.

    python -m engine.commands.export_denoiser logs/default_blind/ckpt_e8.pth -o weights/stbn_blind_small.pth

Only what denoising needs is kept: the weights (without PWC-Net's unused random weights when the
model aligns with DIS or zero flow), the model config, the training arguments and the metrics
history, which record how the model was made. The optimizer state is dropped, so the file cannot
resume a training; `denoise.py`, `sRGB_test.py` and `--finetune` read it like any checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.inference.loading import load_denoiser, refuse_training_checkpoint, save_denoiser
from utils.errors import UserArgumentParser, run_cli
from utils.paths import refuse_overlap


def export_denoiser(model_file: str, output: str) -> Path:
    """Write the denoiser of `model_file` to `output`; returns the path."""
    refuse_overlap(output, "-o/--output", [("the checkpoint", model_file)])
    refuse_training_checkpoint(output, "-o/--output")
    model, checkpoint = load_denoiser(model_file, torch.device("cpu"))
    args = {k: v for k, v in (checkpoint.get("args") or {}).items() if k != "flow_source"}
    save_denoiser(output, model, {**args, "exported_from": str(model_file)},
                  extra={"history": checkpoint.get("history", [])})
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    p = UserArgumentParser(description="Write a training checkpoint's denoiser as a small file.")
    p.add_argument("model_file", help="training checkpoint (ckpt_eN.pth)")
    p.add_argument("-o", "--output", required=True, help="the denoiser file to write")
    args: argparse.Namespace = p.parse_args(argv)
    path = export_denoiser(args.model_file, args.output)
    print(f"wrote '{path}' ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    run_cli(main)
