"""Official blind-spot MSE vs our heteroscedastic Gaussian raw loss, at the same training budget.

Both runs train the same small raw STBN with `CRVD_train.py --builtin CLIP` (simulated raw: the
official per-ISO Poisson-Gaussian noise) with identical settings and steps, differing only in
`--raw_loss`; both checkpoints are then scored by `CRVD_test.py`'s protocol (engine/commands/evaluate_raw.py:
per-ISO raw PSNR/SSIM, clamp, packed channels, data_range 1). Writes a table and
`raw_loss.json` (with the commit and machine) into --out.

    python -m benchmarks.raw_loss [--epochs 8] [--patches_per_epoch 400] [--out benchmarks/results]

The defaults are mainraw.sh's demo settings (8 epochs of 100 steps, 16 channels, 2 units).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import REPO_ROOT, run_record
from datasets.crvd import ISOS, CRVDTestDataset
from datasets.simulated_raw import SIMULATED_SIZE, write_simulated_crvd
from engine.commands.evaluate_raw import evaluate_crvd
from engine.inference.loading import load_denoiser
from engine.train.loop import train
from engine.train.raw import build_arg_parser, raw_data
from utils.checkpoint import latest_checkpoint


def train_argv(args: argparse.Namespace, loss: str, log_dir: Path) -> list[str]:
    """The CRVD_train.py command line of one run (same for both losses but `--raw_loss`)."""
    return ["--builtin", args.clip, "--raw_loss", loss, "--device", "cpu", "--num_workers", "0",
            "--num_channels", str(args.num_channels), "--num_resblocks", str(args.num_resblocks),
            "--patch_size", str(args.patch_size), "--batch_size", str(args.batch_size),
            "--patches_per_epoch", str(args.patches_per_epoch), "--epochs", str(args.epochs),
            "--lr", str(args.lr), "--milestones", str(args.milestone), "--gamma", "0.5",
            "--print_every", "1000000", "--log_dir", str(log_dir)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="bikes")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--milestone", type=int, default=6, help="epoch after which the rate halves")
    p.add_argument("--patches_per_epoch", type=int, default=400)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--patch_size", type=int, default=32)
    p.add_argument("--num_channels", type=int, default=16)
    p.add_argument("--num_resblocks", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="stbn_raw_loss_") as scratch:
        tree = write_simulated_crvd(Path(scratch) / "CRVD", args.clip, *SIMULATED_SIZE, captures=1)
        test_set = CRVDTestDataset(tree)
        for loss in ("mse", "gaussian"):
            log_dir = Path(scratch) / loss
            start = time.perf_counter()
            train(build_arg_parser().parse_args(train_argv(args, loss, log_dir)), data=raw_data)
            seconds = time.perf_counter() - start
            model, _ = load_denoiser(latest_checkpoint(log_dir), torch.device("cpu"))
            rows[loss] = {"train_seconds": seconds, "command": "python CRVD_train.py "
                          + " ".join(train_argv(args, loss, Path(f"logs/raw_{loss}"))),
                          "results": evaluate_crvd(model, test_set)}
            print(f"{loss}: trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    lines = [f"{'ISO':>7}  {'noisy':>8}  {'mse (official)':>15}  {'gaussian (ours)':>16}  {'gain':>6}"]
    for iso in [*map(str, ISOS), "average"]:
        mse, gauss = rows["mse"]["results"][iso], rows["gaussian"]["results"][iso]
        lines.append(f"{iso:>7}  {mse['noisy_psnr']:8.2f}  {mse['psnr']:15.2f}  {gauss['psnr']:16.2f}  "
                     f"{gauss['psnr'] - mse['psnr']:+6.2f}")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "raw_loss.json").write_text(json.dumps(
        {"record": run_record(), "settings": {k: str(v) for k, v in vars(args).items()}, "table": table,
         "runs": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'raw_loss.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
