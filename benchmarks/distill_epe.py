"""Does flow distillation teach a PWC-Net to see motion through the noise? EPE before / after.

A student PWC-Net starts from random weights (`--student_init he` by default: He init with zero
flow heads, so it starts at exactly zero flow) and is trained by `sRGB_train_bsn.py`'s loop with
`--model bdc_flow --teacher dis --flow dis` on a built-in clip's training frames: DIS on the
predicted mean is the teacher, DIS aligns the denoiser while the student learns. The denoiser
trains alone for `--warmup` iterations first (the paper waits 1000), then both train for
`--iterations`. On the held-out frames (sigma 30 test noise) the script reports the mean end-point
error, in pixels, against DIS flow on the CLEAN frames (both directions of every neighbouring
pair) of: the student before and after, zero flow, and DIS on the noisy frames (reference lines).

    .venv/bin/python benchmarks/distill_epe.py [--iterations 400] [--json out.json]

Defaults measured with 1 thread on a loaded 2-core CPU (about 9 minutes): DIS on noisy 2.263 px,
zero flow 5.788, student at init 5.788 (zero flow), after 400 iterations 5.789. The student does
not learn motion from scratch in a CPU-sized run; it stays at zero flow (so did 2000 iterations
with 64x64 crops and PyTorch's init, and every probe listed in the README). Start from PWC
weights (`--teacher pwc --pwc_weights`, the paper's setting) or train far longer on a GPU.
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
from engine.train.distill import NORM_WEIGHT, STUDENT_INITS, he_init_  # noqa: E402
from engine.train.loop import build_arg_parser as train_parser  # noqa: E402
from engine.train.loop import seed_epoch, train  # noqa: E402
from models.flow import dis_flow, make_flow_fn, pair_flows, zero_flow  # noqa: E402
from models.pwc import PWCNet  # noqa: E402
from utils.noise import add_test_noise, unit_sigma  # noqa: E402


def endpoint_error(flows: tuple[torch.Tensor, torch.Tensor],
                   reference: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean Euclidean distance (pixels) between two (backward, forward) pair-flow sets (N,T-1,2,H,W)."""
    return float(torch.cat([(f - r).norm(dim=2).flatten() for f, r in zip(flows, reference)]).mean())


def held_out_clip(clip: str, frames: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) (1,T,3,H,W) from the first `frames` held-out frames, official test noise."""
    _, held_out = builtin_split(clip)
    clean = torch.from_numpy(held_out[:frames]).permute(0, 3, 1, 2).float().div(255)
    return clean[None], add_test_noise(clean, unit_sigma(sigma))[None]


def student_epe(pwcnet: PWCNet, noisy: torch.Tensor, reference) -> float:
    with torch.no_grad():
        return endpoint_error(pair_flows(make_flow_fn("pwc", pwcnet.eval()), noisy), reference)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="bikes",
                   help="built-in clip (bikes: 272x640, large motion; carphone: 144x176, little motion)")
    p.add_argument("--iterations", type=int, default=400, help="iterations with the flow loss on")
    p.add_argument("--warmup", type=int, default=50, help="denoiser-only iterations first")
    p.add_argument("--student_lr", type=float, default=1e-4,
                   help="student Adam lr (official 1e-5 fine-tunes a pretrained PWC; 1e-4 is PWC-Net's "
                        "from-scratch rate)")
    p.add_argument("--distill_weight", type=float, default=5e-4, help="alpha (paper 5e-4)")
    p.add_argument("--distill_norm_weight", type=float, default=NORM_WEIGHT,
                   help="weight of the student's parameter norms in the flow loss (official 4e-4)")
    p.add_argument("--student_init", default="he", choices=STUDENT_INITS,
                   help="he: He init with zero flow heads (PyTorch's default init leaves ~1e-4 cost volumes)")
    p.add_argument("--patch_size", type=int, default=128,
                   help="crop side (64: PWC-Net's coarsest level is 1x1)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--train_length", type=int, default=3)
    p.add_argument("--num_channels", type=int, default=8, help="denoiser width (small: CPU)")
    p.add_argument("--eval_frames", type=int, default=8)
    p.add_argument("--sigma", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    clean, noisy = held_out_clip(args.clip, args.eval_frames, args.sigma)
    reference = pair_flows(dis_flow, clean)
    seed_epoch(args.seed, 0, 0)  # as training seeds its initial weights (he: zero flow whatever the draw)
    student = PWCNet()
    before = student_epe(he_init_(student) if args.student_init == "he" else student, noisy, reference)

    steps = args.warmup + args.iterations
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_dir:
        argv = ["--builtin", args.clip, "--log_dir", log_dir, "--model", "bdc_flow", "--teacher", "dis",
                "--flow", "dis", "--distill_start", str(args.warmup), "--distill_lr", str(args.student_lr),
                "--distill_weight", str(args.distill_weight), "--distill_norm_weight",
                str(args.distill_norm_weight), "--student_init", args.student_init,
                "--epochs", "1", "--milestones", "100",
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
            "student at init": before,
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
