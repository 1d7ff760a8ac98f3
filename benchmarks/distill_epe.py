"""Does flow distillation teach a PWC-Net to see motion through the noise? EPE before / after.

A student PWC-Net starts from random weights and is trained by `sRGB_train_bsn.py`'s loop with
`--model bdc_flow --teacher dis --flow dis` on a built-in clip's training frames: DIS on the
predicted mean is the teacher, DIS aligns the denoiser while the student learns. The denoiser
trains alone for `--warmup` iterations first (the paper waits 1000), then both train for
`--iterations`. On the held-out frames (sigma 30 test noise) the script reports the mean end-point
error, in pixels, against DIS flow on the CLEAN frames (both directions of every neighbouring
pair) of: the student before and after, zero flow, and DIS on the noisy frames (reference lines).

    .venv/bin/python benchmarks/distill_epe.py [--iterations 60] [--json out.json]

Defaults measured on a loaded 2-core CPU (754 s): DIS on noisy 2.263 px, zero flow 5.788, student
at random init 6.160, after 60 iterations 5.802: the student first unlearns its random flow; real
motion from scratch needs thousands of iterations (a GPU), or start from PWC weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import run_record  # noqa: E402
from datasets.builtin import builtin_split  # noqa: E402
from engine.train import build_arg_parser as train_parser  # noqa: E402
from engine.train import seed_epoch, train  # noqa: E402
from models.flow import dis_flow, make_flow_fn, pair_flows, zero_flow  # noqa: E402
from models.pwc import PWCNet  # noqa: E402
from utils.noise import add_test_noise  # noqa: E402


def endpoint_error(flows: tuple[torch.Tensor, torch.Tensor],
                   reference: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean Euclidean distance (pixels) between two (backward, forward) pair-flow sets (N,T-1,2,H,W)."""
    return float(torch.cat([(f - r).norm(dim=2).flatten() for f, r in zip(flows, reference)]).mean())


def held_out_clip(clip: str, frames: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) (1,T,3,H,W) from the first `frames` held-out frames, official test noise."""
    _, held_out = builtin_split(clip)
    clean = torch.from_numpy(held_out[:frames]).permute(0, 3, 1, 2).float().div(255)
    return clean[None], add_test_noise(clean, sigma / 255.0)[None]


def student_epe(pwcnet: PWCNet, noisy: torch.Tensor, reference) -> float:
    with torch.no_grad():
        return endpoint_error(pair_flows(make_flow_fn("pwc", pwcnet.eval()), noisy), reference)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="bikes",
                   help="built-in clip (bikes: 272x640, large motion; carphone: 144x176, little motion)")
    p.add_argument("--iterations", type=int, default=60, help="iterations with the flow loss on")
    p.add_argument("--warmup", type=int, default=10, help="denoiser-only iterations first")
    p.add_argument("--student_lr", type=float, default=1e-3,
                   help="student Adam lr (official 1e-5 fine-tunes a pretrained PWC; random init needs more)")
    p.add_argument("--distill_weight", type=float, default=5e-4, help="alpha (paper 5e-4)")
    p.add_argument("--patch_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--train_length", type=int, default=3)
    p.add_argument("--num_channels", type=int, default=8, help="denoiser width (small: CPU)")
    p.add_argument("--eval_frames", type=int, default=8)
    p.add_argument("--sigma", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args()

    clean, noisy = held_out_clip(args.clip, args.eval_frames, args.sigma)
    reference = pair_flows(dis_flow, clean)
    seed_epoch(args.seed, 0, 0)  # as training seeds its initial weights: PWC-Net is built first
    before = student_epe(PWCNet(), noisy, reference)

    steps = args.warmup + args.iterations
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_dir:
        argv = ["--builtin", args.clip, "--log_dir", log_dir, "--model", "bdc_flow", "--teacher", "dis",
                "--flow", "dis", "--distill_start", str(args.warmup), "--distill_lr", str(args.student_lr),
                "--distill_weight", str(args.distill_weight), "--epochs", "1", "--milestones", "100",
                "--batch_size", str(args.batch_size), "--patch_size", str(args.patch_size),
                "--train_length", str(args.train_length), "--patches_per_epoch", str(steps * args.batch_size),
                "--num_channels", str(args.num_channels), "--num_resblocks", "2", "--noise_ival",
                str(args.sigma), str(args.sigma), "--val_max_frames", "2", "--num_workers", "0",
                "--print_every", "50", "--device", "cpu", "--seed", str(args.seed)]
        model = train(train_parser().parse_args(argv))["model"]
    seconds = time.perf_counter() - start
    after = student_epe(model.pwcnet, noisy, reference)

    rows = {"DIS on noisy frames (reference)": endpoint_error(pair_flows(dis_flow, noisy), reference),
            "zero flow (reference)": endpoint_error(pair_flows(zero_flow, clean), reference),
            "student, random init": before,
            f"student after {args.iterations} distillation iterations": after}
    print(f"EPE (pixels) vs DIS on clean frames, {args.clip} held-out {args.eval_frames} frames, "
          f"sigma {args.sigma:g}")
    for name, value in rows.items():
        print(f"  {name:<48} {value:8.3f}")
    print(f"  training: {steps} iterations in {seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "settings": vars(args), "train_seconds": seconds,
                                               **run_record()}, indent=2))


if __name__ == "__main__":
    main()
